"""What the load generator needs from a system, and the sink its consumers report into.

A driver connects, encodes one publish, counts publish acknowledgements in a byte stream,
runs one consumer-group member that acknowledges everything it gets, and (where the
system has one) one fanout subscriber that only counts what it gets. Workloads are
written once against this interface (``workloads.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

READ_SIZE = 1 << 18
TS_DIGITS = 19  # a monotonic_ns timestamp at the start of a latency payload


def split_line_pairs(buf: bytes) -> tuple[int, bytes]:
    """Replies made of two CRLF-ended lines: how many are complete, and the unfinished tail."""
    crlfs = buf.count(b"\r\n")
    complete = crlfs // 2
    if complete == 0:
        return 0, buf
    cut = buf.rfind(b"\r\n")
    if crlfs % 2:
        cut = buf.rfind(b"\r\n", 0, cut)
    return complete, buf[cut + 2 :]


class Counter(Protocol):
    """A count shared by the load generator's processes (``multiprocessing.Value``)."""

    def add(self, n: int) -> None: ...

    @property
    def value(self) -> int: ...


class AckCounter(Protocol):
    def feed(self, data: bytes) -> tuple[int, int]:
        """Bytes from the server in; (acknowledged, failed) publishes they complete out."""
        ...


@dataclass(slots=True)
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    inbox: bytes = b""

    async def read(self) -> bytes:
        data = await self.reader.read(READ_SIZE)
        if not data:
            raise ConnectionError("connection closed by the server")
        return data

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


async def open_conn(host: str, port: int) -> Conn:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    return Conn(reader, writer)


@dataclass(slots=True)
class Sink:
    """Counts what this process's consumers received; stops them at the global target.

    With ``latency`` on, each payload starts with the ``monotonic_ns`` of its send
    (CLOCK_MONOTONIC is one clock for every process of the machine).
    """

    consumed: Counter
    target: int
    deadline: float
    latency: bool = False
    received: int = 0
    errors: int = 0
    last: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    stopping: bool = False
    conns: list[Conn] = field(default_factory=list)

    def watch(self, conn: Conn) -> None:
        """``stop`` closes this connection, which ends a consumer blocked in a read."""
        self.conns.append(conn)

    def stop(self) -> None:
        self.stopping = True
        for conn in self.conns:
            conn.writer.close()

    def add(self, payloads: list[bytes]) -> None:
        if not payloads:
            return
        if self.latency:
            now = time.monotonic_ns()
            self.latencies_ns.extend(now - int(p[:TS_DIGITS]) for p in payloads)
        self.received += len(payloads)
        self.last = time.monotonic()
        self.consumed.add(len(payloads))

    def add_count(self, n: int) -> None:
        """Messages a fanout subscriber counted without splitting them out."""
        if n:
            self.received += n
            self.last = time.monotonic()
            self.consumed.add(n)

    @property
    def done(self) -> bool:
        return (
            self.stopping or self.consumed.value >= self.target or time.monotonic() > self.deadline
        )


class Driver(ABC):
    name: ClassVar[str]

    @abstractmethod
    async def connect(self, host: str, port: int) -> Conn:
        """Open a connection ready for publishes and pings (handshake done)."""

    @abstractmethod
    def encode_pub(self, conn: Conn, topic: str, payload: bytes) -> bytes: ...

    @abstractmethod
    def pub_acks(self) -> AckCounter: ...

    @abstractmethod
    def encode_ping(self) -> bytes: ...

    @abstractmethod
    def is_pong(self, data: bytes) -> bool:
        """Whether the bytes read so far hold the answer to one ping."""

    async def prepare(
        self, host: str, port: int, topic: str, group: str | None, members: int
    ) -> None:
        """Create what a workload needs first (a stream, a consumer group)."""
        return None

    @abstractmethod
    async def consume(
        self, host: str, port: int, topic: str, group: str, member: int, sink: Sink
    ) -> None:
        """Be one member of ``group``: acknowledge every message until ``sink.done``."""

    async def subscribe(self, host: str, port: int, topic: str, sink: Sink, ready: Counter) -> None:
        """Be one fanout subscriber: count every message until ``sink.done``.

        ``ready`` gets 1 once the subscription is live, so publishers can wait for it.
        """
        raise NotImplementedError(f"no fanout subscriber for {self.name}")

    async def ping(self, conn: Conn, timeout: float = 5.0) -> None:
        conn.writer.write(self.encode_ping())
        data = b""
        while not self.is_pong(data):
            data += await asyncio.wait_for(conn.read(), timeout)
