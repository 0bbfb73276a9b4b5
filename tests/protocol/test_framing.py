"""Line assembly costs work linear in what is fed, however the bytes are split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from linemq.broker.protocol import LINE_TOO_LONG, LineFramer


def pull(framer: LineFramer, data: bytes, want: list[int]) -> list[object]:
    """Feed ``data``; pull lines, or a counted payload after each ``PUT t <n>`` line."""
    framer.feed(data)
    out: list[object] = []
    while True:
        item = framer.take(want[0]) if want[0] else framer.next()
        if item is None:
            return out
        out.append(item)
        if want[0]:
            want[0] = 0
        elif isinstance(item, bytes) and item.startswith(b"PUT "):
            want[0] = int(item.split()[2])


def test_a_long_line_dribbled_byte_by_byte_is_searched_once() -> None:
    line = b"PUB chat " + b"x" * 200_000
    framer = LineFramer(1 << 20)
    for i in range(len(line)):
        framer.feed(line[i : i + 1])
        assert framer.next() is None
    framer.feed(b"\nPING\n")
    assert framer.next() == line
    assert framer.next() == b"PING"
    # Re-searching from the line's start on every read would be ~len(line)**2 / 2.
    assert framer.scanned <= len(line) + 10


def test_a_long_line_in_small_chunks_is_searched_once() -> None:
    line = b"y" * 100_003
    framer = LineFramer(1 << 20)
    for i in range(0, len(line), 7):
        framer.feed(line[i : i + 7])
        assert framer.next() is None
    framer.feed(b"\n")
    assert framer.next() == line
    assert framer.scanned <= len(line) + 10


def test_a_dribbled_line_over_the_limit_is_reported_and_dropped_in_linear_work() -> None:
    framer = LineFramer(1000)
    got: list[object] = []
    for _ in range(50_000):
        framer.feed(b"z")
        while (item := framer.next()) is not None:
            got.append(item)
    assert got == [LINE_TOO_LONG]
    assert framer.buffered <= 1000  # what is over the limit is not kept
    framer.feed(b"\nPING\n")
    assert framer.next() == b"PING"
    assert framer.scanned <= 50_000 + 10


def test_input_fed_while_the_caller_does_not_pull_comes_out_whole() -> None:
    framer = LineFramer(1024)
    framer.feed(b"PING\nSUB a")
    assert framer.next() == b"PING"  # the caller stops here (a SUB that blocks input)
    for piece in (b" b\nPU", b"B a x\n", b"PUT t 3\nab", b"c\nPI", b"NG\n"):
        framer.feed(piece)
    want = [0]
    assert pull(framer, b"", want) == [b"SUB a b", b"PUB a x", b"PUT t 3", b"abc", b"PING"]
    assert framer.buffered == 0


_LINES = st.lists(
    st.one_of(
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
        st.binary(max_size=30).map(lambda b: b"PUT t %d\n" % len(b) + b),
    ),
    max_size=20,
).map(lambda items: b"".join(item + b"\n" for item in items))


_CUTS = st.lists(st.integers(min_value=1, max_value=50), max_size=60)


@given(_LINES, _CUTS, st.sampled_from([8, 1024]))
def test_any_split_gives_what_one_read_gives(stream: bytes, cuts: list[int], limit: int) -> None:
    whole = pull(LineFramer(limit), stream, [0])
    framer, want, got, at = LineFramer(limit), [0], [], 0
    for size in cuts:
        got += pull(framer, stream[at : at + size], want)
        at += size
    got += pull(framer, stream[at:], want)
    assert got == whole
