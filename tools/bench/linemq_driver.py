"""linemq over raw sockets: ``PUB`` lines, one reply line each, ``SUB t g`` and ``ACK <id>``,
``SUB t`` for fanout."""

from __future__ import annotations

from linemq.tools.bench.driver import Conn, Counter, Driver, Sink, open_conn


class LineReplies:
    """Every reply to a PUB is one line; ``ERR ...`` lines are failures."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> tuple[int, int]:
        buf = self._tail + data if self._tail else data
        cut = buf.rfind(b"\n") + 1
        self._tail = buf[cut:]
        complete = buf[:cut]
        lines = complete.count(b"\n")
        errors = 0
        if b"ERR" in complete:
            errors = sum(1 for line in complete.split(b"\n") if line.startswith(b"ERR"))
        return lines - errors, errors


class LinemqDriver(Driver):
    name = "linemq"

    async def connect(self, host: str, port: int) -> Conn:
        conn = await open_conn(host, port)
        banner = await conn.reader.readline()
        if not banner.startswith(b"OK connected"):
            raise ConnectionError(f"unexpected banner {banner!r}")
        return conn

    def encode_pub(self, conn: Conn, topic: str, payload: bytes) -> bytes:
        return b"PUB " + topic.encode() + b" " + payload + b"\n"

    def pub_acks(self) -> LineReplies:
        return LineReplies()

    def encode_ping(self) -> bytes:
        return b"PING\n"

    def is_pong(self, data: bytes) -> bool:
        return b"OK pong\n" in data

    async def prepare(
        self, host: str, port: int, topic: str, group: str | None, members: int
    ) -> None:
        """Create the group (SUB, then UNSUB): it keeps every message published from now on."""
        if group is None:
            return
        conn = await self.connect(host, port)
        try:
            t, g = topic.encode(), group.encode()
            conn.writer.write(b"SUB %s %s\nUNSUB %s %s\n" % (t, g, t, g))
            data = b""
            while data.count(b"\n") < 2:
                data += await conn.read()
            if b"ERR" in data:
                raise RuntimeError(f"cannot create group {group}: {data!r}")
        finally:
            await conn.close()

    async def consume(
        self, host: str, port: int, topic: str, group: str, member: int, sink: Sink
    ) -> None:
        conn = await self.connect(host, port)
        sink.watch(conn)
        conn.writer.write(b"SUB %s %s\n" % (topic.encode(), group.encode()))
        tail = b""
        try:
            while not sink.done:
                data = await conn.read()
                lines = (tail + data).split(b"\n")
                tail = lines.pop()
                acks: list[bytes] = []
                payloads: list[bytes] = []
                for line in lines:
                    if line.startswith(b"MSG "):
                        parts = line.split(b" ", 5)
                        acks.append(b"ACK " + parts[2] + b"\n")
                        payloads.append(parts[5])
                    elif line.startswith(b"ERR"):
                        sink.errors += 1
                if acks:
                    conn.writer.write(b"".join(acks))
                sink.add(payloads)
        except ConnectionError:
            if not sink.done:
                raise
        finally:
            await conn.close()

    async def subscribe(self, host: str, port: int, topic: str, sink: Sink, ready: Counter) -> None:
        """``SUB <topic>``: live from its ``OK``; every ``MSG`` line is counted, never split."""
        conn = await self.connect(host, port)
        sink.watch(conn)
        conn.writer.write(b"SUB %s\n" % topic.encode())
        buf = b""
        while b"\n" not in buf:
            buf += await conn.read()
        reply, _, buf = buf.partition(b"\n")
        if not reply.startswith(b"OK subscribed"):
            raise RuntimeError(f"cannot subscribe to {topic}: {reply!r}")
        ready.add(1)
        try:
            while True:
                cut = buf.rfind(b"\n") + 1
                whole = buf[:cut]
                n = whole.count(b"\nMSG ") + whole.startswith(b"MSG ")
                sink.errors += whole.count(b"\nERR") + whole.startswith(b"ERR")
                sink.add_count(n)
                buf = buf[cut:]
                if sink.done:
                    break
                buf += await conn.read()
        except ConnectionError:
            if not sink.done:
                raise
        finally:
            await conn.close()
