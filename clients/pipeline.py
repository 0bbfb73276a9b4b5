"""The machinery under ``Client``: the reply FIFO, the reader task, routing, heartbeats.

The server answers commands in the order they were sent and pushes deliveries
in between. So every request queues a waiter in the same step as its bytes are
written (no ``await`` in between: FIFO order is wire order), and one reader task
routes what comes back: deliveries to their subscription, block lines to the
oldest waiter, ``OK``/``ERR`` to the oldest waiter and off the FIFO. A ``MSG2`` or
``HISTORY2`` head is followed by its counted payload, which the reader takes
before the next line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final

from clients.protocol import (
    HEARTBEAT,
    BlockLine,
    DlqLine,
    Err,
    Frame,
    FrameHead,
    GroupLine,
    HistoryLine,
    Msg,
    Ok,
    ProtocolError,
    ServerLine,
    StatLine,
    encode_ack,
    encode_nack,
    encode_sub,
    encode_touch,
    parse_server_line,
)
from clients.subscription import Subscription, to_message

# Longest server line we buffer. A MSG line is a PUB line plus ~60 bytes of id,
# offset and ts, and a DLQ line wraps the message in JSON, so this is well above
# any line limit the broker would accept from a publisher. A v2 frame's payload
# is read by its count, not as a line, so this does not bound it.
READ_LIMIT: Final = 16 * 1024 * 1024


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


class Pipeline:
    """One connection's request/reply plumbing; ``Client`` adds the commands on top."""

    def __init__(self, heartbeat_interval: float) -> None:
        if not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be positive, got {heartbeat_interval}")
        self.heartbeat_interval = heartbeat_interval
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiters: deque[_Waiter] = deque()
        # Keyed by topic or pattern, in subscription order (the order patterns are tried).
        self._subs: dict[str, Subscription] = {}
        self._read_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._closing = False
        self._lost: str | None = None

    async def heartbeat(self) -> None:
        await self._request(HEARTBEAT)

    async def ack(self, message_id: str) -> None:
        await self._request(encode_ack(message_id))

    async def nack(self, message_id: str, delay: float | None = None) -> None:
        await self._request(encode_nack(message_id, delay))

    async def touch(self, message_id: str) -> None:
        await self._request(encode_touch(message_id))

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
            await self._request(encode_sub(sub.topic, sub.group, sub.start_at))
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
                line = parse_server_line(await self._reader.readuntil(b"\n"))
                if isinstance(line, FrameHead):
                    self._route(line.complete(await self._reader.readexactly(line.nbytes + 1)))
                else:
                    self._route(line)
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

    def _route(self, line: ServerLine | Frame) -> None:
        match line:
            case Msg() | Frame(kind="MSG2"):
                sub = self._subscription_for(line.topic)
                # None: a late MSG after UNSUB; a group one is redelivered by the server.
                if sub is not None:
                    client = self if sub.group is not None else None
                    sub._deliver(to_message(line, sub.group, client))
            case HistoryLine() | GroupLine() | DlqLine() | StatLine() | Frame():
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

    def _subscription_for(self, topic: str) -> Subscription | None:
        exact = self._subs.get(topic)
        if exact is not None:
            return exact
        return next((s for s in self._subs.values() if s.matches(topic)), None)

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
