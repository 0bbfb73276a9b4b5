"""Delivery lines print timestamps exactly as Python prints floats, whatever came before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from linemq.broker.protocol import replies
from linemq.broker.storage.records import Record

times = st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 1.5, 1795450420.35]))


@given(st.lists(times, min_size=1, max_size=20))
def test_msg_and_history_print_each_ts_as_repr(stamps: list[float]) -> None:
    # Runs of equal stamps hit the remembered text, others replace it.
    records = [Record(i, "i", ts, "m") for i, ts in enumerate(stamps)]
    expected = "".join(f"MSG t i {i} {ts!r} m\n" for i, ts in enumerate(stamps)).encode()
    assert replies.message_lines("MSG", "t", records) == expected
    for r in records:
        line = f"HISTORY t i {r.offset} {r.ts!r} m\n".encode()
        assert replies.message_lines("HISTORY", "t", [r]) == line
