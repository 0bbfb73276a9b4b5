"""The asyncio linemq client: one connection, pipelined requests, pushed deliveries.

The server answers commands in the order they were sent and pushes ``MSG`` lines
in between. So the client keeps a FIFO of waiters, written to in the same step as
the bytes (no ``await`` in between, so order on the wire equals order in the
FIFO), and one reader task routes each line: ``MSG`` to its subscription, block
lines to the oldest waiter, ``OK``/``ERR`` to the oldest waiter and off the FIFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Final, Self

from clients.protocol import (
    HEARTBEAT,
    PING,
    QUIT,
    BlockLine,
    DeadLetter,
    DlqLine,
    Err,
    GroupLine,
    HistoryLine,
    Msg,
    Ok,
    ProtocolError,
    ServerLine,
    StatLine,
    encode_ack,
    encode_auth,
    encode_dlq,
    encode_groups,
    encode_history,
    encode_nack,
    encode_pub,
    encode_replay,
    encode_stats,
    encode_sub,
    encode_touch,
    parse_replayed,
    parse_server_line,
)
from clients.subscription import Message, Subscription

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8888
DEFAULT_HEARTBEAT_INTERVAL: Final = 10.0
DEFAULT_TIMEOUT: Final = 10.0
# Longest server line we buffer. A MSG line is a PUB line plus ~60 bytes of id,
# offset and ts, and a DLQ line wraps the message in JSON, so this is well above
# any line limit the broker would accept from a publisher.
READ_LIMIT: Final = 16 * 1024 * 1024

GroupInfo = GroupLine

__all__ = ["BrokerError", "Client", "GroupInfo", "Message", "Subscription"]


class BrokerError(Exception):
    """The server answered ``ERR``; the connection is still usable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Waiter:
    """One request awaiting its reply; ``block`` collects HISTORY/GROUP/DLQ lines."""

    __slots__ = ("block", "future")

    def __init__(self, future: asyncio.Future[tuple[str, list[BlockLine]]]) -> None:
        self.future = future
        self.block: list[BlockLine] = []


class Client:
    """``async with Client(host, port) as c:`` - one TCP connection to a broker."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        ssl: ssl_.SSLContext | None = None,
    ) -> None:
        """``timeout`` bounds connecting and the ``QUIT`` handshake, not ordinary requests.

        ``token`` is sent as ``AUTH`` right after connecting; ``ssl`` turns on TLS.
        """
        if not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be positive, got {heartbeat_interval}")
        self.host = host
        self.port = port
        self.heartbeat_interval = heartbeat_interval
        self.timeout = timeout
        self.token = token
        self.ssl = ssl
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiters: deque[_Waiter] = deque()
        self._subs: dict[str, Subscription] = {}
        self._read_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._closing = False
        self._lost: str | None = None

    # --- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection and read the ``OK connected`` banner."""
        if self._writer is not None:
            raise RuntimeError("client already connected")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=READ_LIMIT, ssl=self.ssl),
            self.timeout,
        )
        try:
            banner = parse_server_line(
                await asyncio.wait_for(reader.readuntil(b"\n"), self.timeout)
            )
        except (asyncio.IncompleteReadError, ProtocolError, TimeoutError) as exc:
            writer.close()
            raise ConnectionError(f"no linemq banner from {self.host}:{self.port}: {exc}") from exc
        if not isinstance(banner, Ok):
            writer.close()
            raise ConnectionError(f"server refused the connection: {banner}")
        self._reader, self._writer = reader, writer
        self._read_task = asyncio.create_task(self._read_loop(), name="linemq-reader")
        if self.token is not None:
            try:
                await self._request(encode_auth(self.token))
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        """Say ``QUIT`` and wait for ``OK bye``; fine if the server is already gone."""
        if self._writer is None or self._closing:
            return
        self._stop_heartbeat()
        if self._lost is None:
            (bye,) = self._send(QUIT, 1)
            self._closing = True
            with contextlib.suppress(ConnectionError, BrokerError, TimeoutError):
                await asyncio.wait_for(bye.future, self.timeout)
        self._closing = True
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_task
        self._shutdown(None)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- commands ----------------------------------------------------------

    async def ping(self) -> None:
        await self._request(PING)

    async def publish(self, topic: str, text: str) -> None:
        """Return once the broker said ``OK published`` (it is durable by then)."""
        await self._request(encode_pub(topic, text))

    async def publish_many(self, topic: str, texts: Iterable[str]) -> int:
        """Pipeline many PUBs in one write; raise the first error after all replies are in.

        Every line is encoded before any is sent, so an invalid message sends nothing.
        """
        lines = [encode_pub(topic, text) for text in texts]
        if not lines:
            return 0
        waiters = self._send(b"".join(lines), len(lines))
        await self._drain()
        results = await asyncio.gather(*(w.future for w in waiters), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(lines)

    async def history(self, topic: str, n: int) -> list[Message]:
        _, block = await self._request(encode_history(topic, n))
        return [_message(line) for line in block if isinstance(line, HistoryLine)]

    async def groups(self, topic: str) -> list[GroupInfo]:
        _, block = await self._request(encode_groups(topic))
        return [line for line in block if isinstance(line, GroupLine)]

    async def dlq(self, topic: str, n: int | None = None) -> list[DeadLetter]:
        """Last ``n`` dead letters of ``topic`` (server default 100), oldest first."""
        _, block = await self._request(encode_dlq(topic, n))
        return [line.letter for line in block if isinstance(line, DlqLine)]

    async def replay(self, topic: str, target: str) -> int:
        """Republish a dead letter (by id) or ``"ALL"`` unreplayed ones; return how many."""
        text, _ = await self._request(encode_replay(topic, target))
        return parse_replayed(text)

    async def stats(self, topic: str | None = None) -> list[StatLine]:
        """The ``STAT`` lines of ``STATS [topic]``: the broker, then topics, then groups."""
        _, block = await self._request(encode_stats(topic))
        return [line for line in block if isinstance(line, StatLine)]

    async def ack(self, message_id: str) -> None:
        await self._request(encode_ack(message_id))

    async def nack(self, message_id: str, delay: float | None = None) -> None:
        await self._request(encode_nack(message_id, delay))

    async def touch(self, message_id: str) -> None:
        await self._request(encode_touch(message_id))

    async def heartbeat(self) -> None:
        await self._request(HEARTBEAT)

    def subscribe(self, topic: str, group: str | None = None) -> Subscription:
        """A subscription that sends ``SUB`` on first iteration (or ``await sub.start()``)."""
        encode_sub(topic, group)  # validate now, not on first iteration
        return Subscription(self, topic, group)

    async def subscribe_to(self, topic: str, group: str | None = None) -> Subscription:
        """Subscribe now: returns once the server confirmed with ``OK subscribed``."""
        return await self.subscribe(topic, group).start()

    # --- plumbing ----------------------------------------------------------

    def _send(self, data: bytes, replies: int) -> list[_Waiter]:
        """Queue waiters and write, with no await between, so FIFO order is wire order."""
        if self._lost is not None:
            raise ConnectionError(self._lost)
        if self._writer is None or self._closing:
            raise ConnectionError("client is not connected")
        loop = asyncio.get_running_loop()
        waiters = [_Waiter(loop.create_future()) for _ in range(replies)]
        self._waiters.extend(waiters)
        self._writer.write(data)
        return waiters

    async def _drain(self) -> None:
        assert self._writer is not None
        try:
            await self._writer.drain()
        except OSError as exc:
            raise ConnectionError(f"connection lost: {exc}") from exc

    async def _request(self, line: bytes) -> tuple[str, list[BlockLine]]:
        (waiter,) = self._send(line, 1)
        await self._drain()
        return await waiter.future

    async def _start_subscription(self, sub: Subscription) -> None:
        try:
            if sub.topic in self._subs:
                raise ValueError(f"already subscribed to {sub.topic!r} on this connection")
            # Registered before SUB goes out: the first MSG may follow the OK immediately.
            self._subs[sub.topic] = sub
            await self._request(encode_sub(sub.topic, sub.group))
        except BaseException:
            self._forget(sub, None)  # later next() calls end instead of waiting forever
            raise
        if sub.group is not None and self._heartbeat_task is None:
            self._heartbeat_task = asyncio.create_task(
                self._heartbeat_loop(), name="linemq-heartbeat"
            )

    def _forget(self, sub: Subscription, error: str | None) -> None:
        if self._subs.get(sub.topic) is sub:
            del self._subs[sub.topic]
        sub._end(error)
        if not any(s.group is not None for s in self._subs.values()):
            self._stop_heartbeat()

    async def _heartbeat_loop(self) -> None:
        """Keeps group memberships alive while the application is busy between messages."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.heartbeat()
            except BrokerError:
                continue
            except ConnectionError:
                return

    def _stop_heartbeat(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                self._route(parse_server_line(await self._reader.readuntil(b"\n")))
        except asyncio.IncompleteReadError:
            reason = "connection closed by server"
        except asyncio.LimitOverrunError:
            reason = f"server line longer than {READ_LIMIT} bytes"
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
        except OSError as exc:
            reason = f"connection lost: {exc}"
        self._shutdown(None if self._closing else reason)
        if self._writer is not None:
            self._writer.close()

    def _route(self, line: ServerLine) -> None:
        match line:
            case Msg():
                sub = self._subs.get(line.topic)
                # None: a late MSG after UNSUB; a group one is redelivered by the server.
                if sub is not None:
                    client = self if sub.group is not None else None
                    sub._deliver(_message(line, sub.group, client))
            case HistoryLine() | GroupLine() | DlqLine() | StatLine():
                if not self._waiters:
                    raise ProtocolError(f"{type(line).__name__} without a request")
                self._waiters[0].block.append(line)
            case Ok() | Err():
                if not self._waiters:
                    raise ProtocolError(f"reply without a request: {line}")
                waiter = self._waiters.popleft()
                if waiter.future.done():  # its caller was cancelled; the reply is still consumed
                    return
                if isinstance(line, Err):
                    waiter.future.set_exception(BrokerError(line.reason))
                else:
                    waiter.future.set_result((line.text, waiter.block))

    def _shutdown(self, error: str | None) -> None:
        """End everything: ``error`` None for a close we asked for, else the loss reason."""
        if error is not None and self._lost is None:
            self._lost = error
        self._stop_heartbeat()
        while self._waiters:
            future = self._waiters.popleft().future
            if not future.done():
                future.set_exception(ConnectionError(error or "client closed"))
        for sub in list(self._subs.values()):
            self._forget(sub, error)


def _message(
    line: Msg | HistoryLine, group: str | None = None, client: Client | None = None
) -> Message:
    return Message(line.topic, line.id, line.offset, line.ts, line.text, group, line.raw, client)
