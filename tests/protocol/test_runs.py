"""The run shortcuts agree with line-by-line parsing whenever they accept a span."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from linemq.broker.protocol.runs import ack_ids, only_argument, pub_bodies

# Bytes a client might send after "ACK " or "PUB t ": printable, spaces, controls, UTF-8, junk.
arg = st.one_of(
    st.text(max_size=12).map(str.encode),
    st.binary(max_size=12).filter(lambda b: b"\n" not in b),
    st.sampled_from([b"msg_1_ab", b"a b", b"x\r", b"", b"\x00", b"\xff", b"\t"]),
).filter(lambda b: b"\n" not in b)


@given(st.lists(arg, min_size=1, max_size=8))
def test_ack_ids_match_only_argument_line_by_line(args: list[bytes]) -> None:
    lines = [b"ACK " + a for a in args]
    ids = ack_ids(b"\n".join(lines) + b"\n")
    if ids is not None:
        assert ids == [only_argument(line) for line in lines]


@given(st.lists(arg, min_size=1, max_size=8))
def test_pub_bodies_match_the_line_by_line_checks(args: list[bytes]) -> None:
    prefix = b"PUB t "
    bodies = pub_bodies(b"".join(prefix + a + b"\n" for a in args), prefix)
    if bodies is not None:
        # What _vetted_pub accepts: non-empty, no NUL, valid UTF-8, and (no CR here) as is.
        assert all(a and b"\x00" not in a and b"\r" not in a for a in args)
        assert bodies == [a.decode() for a in args]


def test_a_plain_run_is_accepted() -> None:
    assert ack_ids(b"ACK a\nACK b\n") == ["a", "b"]
    assert pub_bodies(b"PUB t  x \nPUB t \xc3\xa9\n", b"PUB t ") == [" x ", "é"]
