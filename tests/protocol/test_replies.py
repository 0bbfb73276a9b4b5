"""Delivery lines print timestamps exactly as Python prints floats, whatever came before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.protocol import replies

times = st.one_of(st.floats(allow_nan=False), st.sampled_from([0.0, -0.0, 1.5, 1795450420.35]))


@given(st.lists(times, min_size=1, max_size=20))
def test_msg_and_history_print_each_ts_as_repr(stamps: list[float]) -> None:
    for ts in stamps:  # runs of equal stamps hit the remembered text, others replace it
        assert replies.msg("t", "i", 1, ts, "m") == f"MSG t i 1 {ts!r} m\n".encode()
        assert replies.history("t", "i", 2, ts, "m") == f"HISTORY t i 2 {ts!r} m\n".encode()
