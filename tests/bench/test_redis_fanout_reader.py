"""The Redis fanout reader finds the end of an ``XREAD`` reply however the bytes arrive."""

from __future__ import annotations

import pytest

from linemq.tools.bench.redis_driver import RespError, XreadReply


def _reply(key: bytes, entries: list[tuple[bytes, bytes]]) -> bytes:
    """An XREAD reply for one stream as Redis writes it (RESP2)."""
    out = [b"*1\r\n*2\r\n$%d\r\n%s\r\n*%d\r\n" % (len(key), key, len(entries))]
    for entry_id, payload in entries:
        out.append(b"*2\r\n$%d\r\n%s\r\n*2\r\n$1\r\nm\r\n" % (len(entry_id), entry_id))
        out.append(b"$%d\r\n%s\r\n" % (len(payload), payload))
    return b"".join(out)


ENTRIES = [(b"1765100000000-%d" % i, b"x" * (10 + i)) for i in range(5)]
WHOLE = _reply(b"sweep", ENTRIES)


@pytest.mark.parametrize("cut", range(1, len(WHOLE)))
def test_reply_is_whole_only_at_its_last_byte_wherever_it_is_split(cut: int) -> None:
    reply = XreadReply()
    assert reply.feed(WHOLE[:cut]) is None
    assert reply.feed(WHOLE[cut:]) == (5, b"1765100000000-4")


def test_reply_fed_byte_by_byte_counts_entries_and_keeps_the_last_id() -> None:
    reply = XreadReply()
    got = [reply.feed(WHOLE[i : i + 1]) for i in range(len(WHOLE))]
    assert got[:-1] == [None] * (len(WHOLE) - 1)
    assert got[-1] == (5, b"1765100000000-4")


def test_a_key_with_digits_and_a_block_timeout() -> None:
    assert XreadReply().feed(_reply(b"t.10", [(b"1-1", b"x")])) == (1, b"1-1")
    assert XreadReply().feed(b"*-1\r\n") == (0, b"")  # BLOCK ran out: nothing new


def test_an_error_reply_is_raised() -> None:
    with pytest.raises(RespError, match="WRONGTYPE"):
        XreadReply().feed(b"-WRONGTYPE Operation against a key\r\n")
