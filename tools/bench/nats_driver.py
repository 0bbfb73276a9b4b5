"""NATS JetStream over the raw NATS protocol.

Publish: ``PUB <subject> <inbox> <n>`` to a file-storage stream; the PubAck is a ``MSG`` on
the connection's inbox. Consume: a durable pull consumer fed by
``$JS.API.CONSUMER.MSG.NEXT`` batches, each message acknowledged with ``+ACK`` on its
reply subject.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Final

from linemq.tools.bench.driver import Conn, Driver, Sink, open_conn, split_line_pairs

BATCH: Final = 256  # messages per pull request, like linemq's --max-inflight 256
PULLS_IN_FLIGHT: Final = 2
EXPIRES_NS: Final = 1_000_000_000
ACK_WAIT_NS: Final = 30_000_000_000
CONNECT: Final = (
    b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,'
    b'"protocol":1,"lang":"python-raw","version":"0"}\r\n'
)

# (kind, subject, reply, headers, body)
Event = tuple[bytes, bytes, bytes, bytes, bytes]


def stream_name(topic: str) -> str:
    return topic.upper().replace(".", "_").replace("-", "_")


def encode_pub(subject: bytes, reply: bytes, payload: bytes) -> bytes:
    return b"PUB %s %s %d\r\n%s\r\n" % (subject, reply, len(payload), payload)


class NatsParser:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[Event]:
        buf = self._buf + data if self._buf else data
        pos = 0
        out: list[Event] = []
        while True:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            line = buf[pos:end]
            if line.startswith((b"MSG ", b"HMSG ")):
                parts = line.split(b" ")
                is_hmsg = parts[0] == b"HMSG"
                headers_len = int(parts[-2]) if is_hmsg else 0
                size = int(parts[-1])
                reply = parts[3] if len(parts) == (6 if is_hmsg else 5) else b""
                start = end + 2
                if len(buf) < start + size + 2:
                    break
                payload = buf[start : start + size]
                out.append(
                    (parts[0], parts[1], reply, payload[:headers_len], payload[headers_len:])
                )
                pos = start + size + 2
            else:
                out.append((line.split(b" ", 1)[0], b"", b"", b"", line))
                pos = end + 2
        self._buf = buf[pos:]
        return out


class PubAckReplies:
    """A PubAck is ``MSG <inbox> <sid> <n>\\r\\n{json}\\r\\n``: two CRLFs, counted unparsed.

    Anything else (an error, a PING, a header status) takes the full parser.
    """

    __slots__ = ("_parser", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._parser = NatsParser()

    def feed(self, data: bytes) -> tuple[int, int]:
        buf = self._tail + data if self._tail else data
        if b"error" in buf or b"PING" in buf or b"ERR" in buf or b"HMSG" in buf:
            self._tail = b""
            ok = errors = 0
            for kind, _, _, _, body in self._parser.feed(buf):
                if kind == b"MSG" and b'"error"' not in body:
                    ok += 1
                elif kind in (b"MSG", b"HMSG", b"-ERR"):
                    errors += 1
            return ok, errors
        complete, self._tail = split_line_pairs(buf)
        return complete, 0


class NatsDriver(Driver):
    name = "nats"

    async def connect(self, host: str, port: int) -> Conn:
        conn = await open_conn(host, port)
        info = await conn.reader.readline()
        if not info.startswith(b"INFO"):
            raise ConnectionError(f"unexpected greeting {info[:80]!r}")
        conn.inbox = b"_INBOX.bench." + os.urandom(8).hex().encode()
        conn.writer.write(CONNECT + b"SUB " + conn.inbox + b" 1\r\nPING\r\n")
        data = b""
        while b"PONG\r\n" not in data:
            data += await conn.read()
        return conn

    def encode_pub(self, conn: Conn, topic: str, payload: bytes) -> bytes:
        return encode_pub(topic.encode(), conn.inbox, payload)

    def pub_acks(self) -> PubAckReplies:
        return PubAckReplies()

    def encode_ping(self) -> bytes:
        return b"PING\r\n"

    def is_pong(self, data: bytes) -> bool:
        return b"PONG\r\n" in data

    async def prepare(
        self, host: str, port: int, topic: str, group: str | None, members: int
    ) -> None:
        stream = stream_name(topic)
        conn = await self.connect(host, port)
        try:
            config = {"name": stream, "subjects": [topic], "storage": "file", "num_replicas": 1}
            await _api(conn, f"$JS.API.STREAM.CREATE.{stream}", config)
            if group is not None:
                consumer = {
                    "stream_name": stream,
                    "config": {
                        "durable_name": group,
                        "ack_policy": "explicit",
                        "deliver_policy": "all",
                        "ack_wait": ACK_WAIT_NS,
                        "max_ack_pending": max(1, members) * BATCH,
                        "max_waiting": 512,
                    },
                }
                await _api(conn, f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{group}", consumer)
        finally:
            await conn.close()

    async def consume(
        self, host: str, port: int, topic: str, group: str, member: int, sink: Sink
    ) -> None:
        conn = await self.connect(host, port)
        sink.watch(conn)
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream_name(topic)}.{group}".encode()
        pull = encode_pub(subject, conn.inbox, b'{"batch":%d,"expires":%d}' % (BATCH, EXPIRES_NS))
        conn.writer.write(pull * PULLS_IN_FLIGHT)
        parser = NatsParser()
        since_pull = 0
        try:
            while not sink.done:
                out: list[bytes] = []
                payloads: list[bytes] = []
                for kind, _, reply, headers, body in parser.feed(await conn.read()):
                    if kind == b"MSG" and reply.startswith(b"$JS.ACK."):
                        payloads.append(body)
                        out.append(b"PUB " + reply + b" 4\r\n+ACK\r\n")
                        since_pull += 1
                        if since_pull >= BATCH:
                            since_pull -= BATCH
                            out.append(pull)
                    elif kind == b"HMSG" and headers[9:12] in (b"408", b"404"):
                        since_pull = 0
                        out.append(pull)
                    elif kind == b"PING":
                        out.append(b"PONG\r\n")
                    elif kind in (b"-ERR", b"HMSG"):
                        sink.errors += 1
                if out:
                    conn.writer.write(b"".join(out))
                sink.add(payloads)
        except ConnectionError:
            if not sink.done:
                raise
        finally:
            await conn.close()


async def _api(conn: Conn, subject: str, request: object) -> object:
    conn.writer.write(encode_pub(subject.encode(), conn.inbox, json.dumps(request).encode()))
    parser = NatsParser()
    while True:
        for kind, _, _, _, body in parser.feed(await asyncio.wait_for(conn.read(), 10)):
            if kind == b"MSG":
                reply = json.loads(body)
                if isinstance(reply, dict) and "error" in reply:
                    raise RuntimeError(f"{subject}: {reply['error']}")
                return reply
            if kind in (b"HMSG", b"-ERR"):
                raise RuntimeError(f"{subject}: {body!r}")
