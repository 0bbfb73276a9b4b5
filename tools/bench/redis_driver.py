"""Redis Streams over raw RESP2: ``XADD`` to publish, ``XREADGROUP`` + ``XACK`` to consume,
``XREAD`` for a fanout reader."""

from __future__ import annotations

from typing import Final

from linemq.tools.bench.driver import Conn, Counter, Driver, Sink, open_conn, split_line_pairs

READ_COUNT: Final = 256  # entries per XREADGROUP, like linemq's --max-inflight 256
BLOCK_MS: Final = b"100"
FIELD: Final = b"m"


ENTRY_MARK: Final = b"\r\n*2\r\n$1\r\nm\r\n$"  # <id> here, then field "m", then the payload


class RespError(Exception):
    pass


RespValue = bytes | int | None | RespError | list["RespValue"]
_INCOMPLETE: Final = object()


def encode(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def _parse(buf: bytes, pos: int) -> tuple[object, int]:
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = buf[pos]
    line = buf[pos + 1 : end]
    nxt = end + 2
    if kind == 0x24:  # $ bulk string
        n = int(line)
        if n < 0:
            return None, nxt
        if len(buf) < nxt + n + 2:
            return _INCOMPLETE, pos
        return buf[nxt : nxt + n], nxt + n + 2
    if kind == 0x2A:  # * array
        n = int(line)
        if n < 0:
            return None, nxt
        items: list[object] = []
        for _ in range(n):
            item, nxt = _parse(buf, nxt)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, nxt
    if kind == 0x3A:  # : integer
        return int(line), nxt
    if kind == 0x2D:  # - error
        return RespError(line.decode(errors="replace")), nxt
    return line, nxt  # + simple string


class RespParser:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[RespValue]:
        buf = self._buf + data if self._buf else data
        pos = 0
        out: list[RespValue] = []
        while pos < len(buf):
            value, nxt = _parse(buf, pos)
            if value is _INCOMPLETE:
                break
            out.append(value)  # type: ignore[arg-type]
            pos = nxt
        self._buf = buf[pos:]
        return out


class XaddReplies:
    """XADD answers ``$<n>\\r\\n<id>\\r\\n``: two CRLFs a reply, counted without parsing.

    An error (a line starting with ``-``) falls back to the full parser.
    """

    __slots__ = ("_parser", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._parser = RespParser()

    def feed(self, data: bytes) -> tuple[int, int]:
        buf = self._tail + data if self._tail else data
        if buf.startswith(b"-") or b"\n-" in buf:
            self._tail = b""
            values = self._parser.feed(buf)
            errors = sum(1 for v in values if isinstance(v, RespError))
            return len(values) - errors, errors
        complete, self._tail = split_line_pairs(buf)
        return complete, 0


class XreadReply:
    """One ``XREAD`` reply for one stream, its end found without parsing every entry.

    A reader counts what it gets and remembers the last id: splitting each entry out in
    Python would make the load generator, not Redis, the cost of a wide fanout, while
    linemq's subscriber counts lines in C. Entries are found by the bytes that follow every
    id (``ENTRY_MARK``), which the bench's payloads (all ``x``) never contain.
    """

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> tuple[int, bytes] | None:
        """Bytes in; ``(entries, last id)`` once the reply is whole (``(0, b"")``: none)."""
        buf = self.buf = self.buf + data
        if buf.startswith(b"*-1\r\n"):
            return 0, b""
        if buf.startswith(b"-"):
            end = buf.find(b"\r\n")
            if end < 0:
                return None
            raise RespError(buf[1:end].decode(errors="replace"))
        header = _stream_header(buf)
        if header is None:
            return None
        entries, start = header
        mark = buf.rfind(ENTRY_MARK, start)
        if mark < 0:
            return (0, b"") if entries == 0 else None
        length_at = mark + len(ENTRY_MARK)
        length_end = buf.find(b"\r\n", length_at)
        if length_end < 0 or len(buf) < length_end + 2 + int(buf[length_at:length_end]) + 2:
            return None
        if buf.count(ENTRY_MARK, start) < entries:
            return None
        id_at = buf.rfind(b"\r\n", start, mark) + 2
        return entries, buf[id_at:mark]


def _stream_header(buf: bytes) -> tuple[int, int] | None:
    """``*1 *2 $key *N``: the entry count N and where the entries start."""
    if not buf.startswith(b"*1\r\n*2\r\n$"):
        return None
    key_len_end = buf.find(b"\r\n", 9)
    if key_len_end < 0:
        return None
    count_at = key_len_end + 2 + int(buf[9:key_len_end]) + 2
    count_end = buf.find(b"\r\n", count_at)
    if count_end < 0:
        return None
    return int(buf[count_at + 1 : count_end]), count_end + 2


class RedisDriver(Driver):
    name = "redis"

    async def connect(self, host: str, port: int) -> Conn:
        return await open_conn(host, port)

    def encode_pub(self, conn: Conn, topic: str, payload: bytes) -> bytes:
        return encode(b"XADD", topic.encode(), b"*", FIELD, payload)

    def pub_acks(self) -> XaddReplies:
        return XaddReplies()

    def encode_ping(self) -> bytes:
        return encode(b"PING")

    def is_pong(self, data: bytes) -> bool:
        return b"+PONG\r\n" in data

    async def prepare(
        self, host: str, port: int, topic: str, group: str | None, members: int
    ) -> None:
        if group is None:
            return
        conn = await self.connect(host, port)
        try:
            cmd = encode(b"XGROUP", b"CREATE", topic.encode(), group.encode(), b"$", b"MKSTREAM")
            await _request(conn, cmd, 1)
        finally:
            await conn.close()

    async def consume(
        self, host: str, port: int, topic: str, group: str, member: int, sink: Sink
    ) -> None:
        conn = await self.connect(host, port)
        sink.watch(conn)
        key, grp = topic.encode(), group.encode()
        read = encode(
            b"XREADGROUP", b"GROUP", grp, b"c%d" % member, b"COUNT", b"%d" % READ_COUNT,
            b"BLOCK", BLOCK_MS, b"STREAMS", key, b">",
        )  # fmt: skip
        ids: list[bytes] = []
        try:
            while not sink.done:
                out = encode(b"XACK", key, grp, *ids) + read if ids else read
                replies = await _request(conn, out, 2 if ids else 1)
                ids = []
                payloads: list[bytes] = []
                reply = replies[-1]
                if isinstance(reply, list):
                    for stream in reply:
                        assert isinstance(stream, list)
                        entries = stream[1]
                        assert isinstance(entries, list)
                        for entry in entries:
                            assert isinstance(entry, list)
                            entry_id, fields = entry
                            assert isinstance(entry_id, bytes) and isinstance(fields, list)
                            ids.append(entry_id)
                            payloads.append(fields[1])  # type: ignore[arg-type]
                sink.errors += sum(1 for r in replies if isinstance(r, RespError))
                sink.add(payloads)
            if ids:
                conn.writer.write(encode(b"XACK", key, grp, *ids))
        except ConnectionError:
            if not sink.done:
                raise
        finally:
            await conn.close()

    async def subscribe(self, host: str, port: int, topic: str, sink: Sink, ready: Counter) -> None:
        """``XREAD BLOCK`` from the start of a fresh stream, then from the last id read.

        Fanout over a stream, not ``SUBSCRIBE``: linemq stores every message its
        subscribers get, so Redis does too (``XADD`` goes to the AOF; ``PUBLISH`` does not).
        """
        conn = await self.connect(host, port)
        sink.watch(conn)
        key = topic.encode()
        last = b"0-0"
        ready.add(1)  # from 0-0 on a stream of this run only: nothing published is missed
        try:
            while not sink.done:
                conn.writer.write(
                    encode(b"XREAD", b"COUNT", b"%d" % READ_COUNT, b"BLOCK", BLOCK_MS,
                           b"STREAMS", key, last)
                )  # fmt: skip
                reply = XreadReply()
                got = None
                while got is None:
                    got = reply.feed(await conn.read())
                entries, last_id = got
                if entries:
                    last = last_id
                    sink.add_count(entries)
        except ConnectionError:
            if not sink.done:
                raise
        finally:
            await conn.close()


async def _request(conn: Conn, data: bytes, replies: int) -> list[RespValue]:
    conn.writer.write(data)
    parser = RespParser()
    out: list[RespValue] = []
    while len(out) < replies:
        out.extend(parser.feed(await conn.read()))
    for value in out:
        if isinstance(value, RespError) and "BUSYGROUP" not in str(value):
            raise value
    return out
