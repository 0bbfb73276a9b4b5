"""A tiny fake broker speaking the linemq line protocol, for client tests.

Just enough behaviour to exercise the client: it stores messages in memory, fans
them out, hands group messages round-robin and tracks their ACKs. It also records
every line it received so tests can assert on the wire. It delivers MSG lines to
subscribers *before* replying to the PUB that caused them, so a client that
publishes to its own subscription sees a MSG interleaved with its replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

DEAD_LETTER = {
    "topic": "jobs",
    "id": "msg_1_dead0001",
    "offset": 3,
    "ts": 1758865780.5,
    "msg": "a poison message that keeps failing over and over again",
    "group": "workers",
    "attempts": 5,
    "reason": "nacked",
    "first_delivery_ts": 1758865781.0,
    "last_delivery_ts": 1758865790.0,
    "dead_ts": 1758865790.1,
    "replayed": None,
}


@dataclass
class Conn:
    writer: asyncio.StreamWriter
    received: list[str] = field(default_factory=list)
    subs: dict[str, str | None] = field(default_factory=dict)


@dataclass
class FakeBroker:
    port: int = 0
    topics: dict[str, list[tuple[str, int, float, str]]] = field(default_factory=dict)
    conns: list[Conn] = field(default_factory=list)
    pending: dict[str, Conn] = field(default_factory=dict)
    # When set, PING gets no reply: lets a test hold a request open.
    silent_ping: bool = False
    # Seconds before a PING is answered: a slow reply, still in order.
    ping_delay: float = 0.0
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _rr: Iterator[int] = field(default_factory=itertools.count)
    _server: asyncio.Server | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def received(self) -> list[str]:
        return [line for conn in self.conns for line in conn.received]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        self.drop_connections()
        await self._server.wait_closed()

    def publish_when_subscribed(self, sub_line: str, topic: str, texts: list[str]) -> None:
        """From another thread: once ``sub_line`` has arrived, publish ``texts`` to ``topic``."""

        def run() -> None:
            deadline = time.monotonic() + 5
            while sub_line not in self.received and time.monotonic() < deadline:
                time.sleep(0.005)
            assert self._loop is not None
            for text in texts:
                self._loop.call_soon_threadsafe(self._publish, topic, text)

        threading.Thread(target=run, daemon=True).start()

    def push(self, line: str, *, close: bool = False) -> None:
        """Send ``line`` to every client unasked (then close, as a broker that hangs up)."""
        for conn in self.conns:
            conn.writer.write(line.encode() + b"\n")
            if close:
                conn.writer.close()

    def drop_connections(self) -> None:
        for conn in self.conns:
            conn.writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(writer)
        self.conns.append(conn)
        writer.write(b"OK connected\n")
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while line := await reader.readline():
                text = line.decode().rstrip("\r\n")
                conn.received.append(text)
                reply = self._command(conn, text)
                if text == "PING" and self.ping_delay:
                    await asyncio.sleep(self.ping_delay)
                if reply is not None:
                    writer.write(reply.encode())
                await writer.drain()
                if text == "QUIT":
                    break
        writer.close()

    def _command(self, conn: Conn, line: str) -> str | None:
        word, _, rest = line.partition(" ")
        args = rest.split()
        match word:
            case "PING":
                return None if self.silent_ping else "OK pong\n"
            case "QUIT":
                return "OK bye\n"
            case "HEARTBEAT":
                return "OK heartbeat_received\n"
            case "PUB":
                topic, _, text = rest.partition(" ")
                if text == "boom":
                    return "ERR rejected boom\n"
                self._publish(topic, text)
                return "OK published\n"
            case "SUB":
                conn.subs[args[0]] = args[1] if len(args) > 1 else None
                if len(args) > 1:
                    return f"OK subscribed {args[0]} in group {args[1]}\n"
                return f"OK subscribed {args[0]}\n"
            case "UNSUB":
                conn.subs.pop(args[0], None)
                return f"OK unsubscribed {args[0]}\n"
            case "HISTORY":
                records = self.topics.get(args[0], [])[-int(args[1]) :] if int(args[1]) else []
                return "".join(
                    f"HISTORY {args[0]} {i} {o} {ts!r} {t}\n" for i, o, ts, t in records
                ) + ("OK history end\n")
            case "ACK" | "NACK" | "TOUCH" if args[0] in self.pending:
                if word == "ACK":
                    del self.pending[args[0]]
                return {"ACK": "OK ack_received\n", "NACK": "OK nack_received\n"}.get(
                    word, "OK touched\n"
                )
            case "ACK" | "NACK" | "TOUCH":
                return f"ERR message {args[0]} not found in pending messages\n"
            case "GROUPS":
                return (
                    f"GROUP {args[0]} workers members=2 inflight=1 waiting=0 lag=3 acked=10\n"
                    f"GROUP {args[0]} audit members=1 inflight=0 waiting=0 lag=0 acked=13\n"
                    "OK groups end\n"
                )
            case "DLQ":
                letter = dict(DEAD_LETTER, topic=args[0])
                return f"DLQ {args[0]} 1 {json.dumps(letter)}\nOK dlq end\n"
            case "REPLAY":
                return (
                    "OK replayed 1\n"
                    if args[1] in ("ALL", DEAD_LETTER["id"])
                    else (f"ERR message {args[1]} not found in {args[0]}.dlq\n")
                )
            case _:
                return f"ERR unknown command: {line}\n"

    def _publish(self, topic: str, text: str) -> None:
        records = self.topics.setdefault(topic, [])
        record = (f"msg_1758865780040_{next(self._ids):08x}", len(records) + 1, 1758865780.25, text)
        records.append(record)
        msg_id, offset, ts, _ = record
        line = f"MSG {topic} {msg_id} {offset} {ts!r} {text}\n".encode()
        subscribers = [c for c in self.conns if topic in c.subs]
        for conn in subscribers:
            if conn.subs[topic] is None:
                conn.writer.write(line)
        # One group per topic is all the tests need: round-robin over its members.
        members = [c for c in subscribers if c.subs[topic] is not None]
        if members:
            chosen = members[next(self._rr) % len(members)]
            self.pending[msg_id] = chosen
            chosen.writer.write(line)


@pytest.fixture
async def fake_broker() -> AsyncIterator[FakeBroker]:
    fake = FakeBroker()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def threaded_fake_broker() -> Iterator[FakeBroker]:
    """The fake broker on its own loop in a thread, for code that calls ``asyncio.run``."""
    fake = FakeBroker()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(5)
    yield fake
    asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()
