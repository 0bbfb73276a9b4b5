"""The machinery under ``Client``: links, the reply FIFO, the reader, reconnects, heartbeats.

The server answers commands in the order they were sent and pushes deliveries
in between. So every request queues a waiter in the same step as its bytes are
written (no ``await`` in between: FIFO order is wire order), and one reader task
per connection ("link") routes what comes back: deliveries to their
subscription, block lines to the oldest waiter, ``OK``/``ERR`` to the oldest
waiter and off the FIFO. A ``MSG2`` or ``HISTORY2`` head is followed by its
counted payload, which the reader takes before the next line.

A link that dies fails its waiters with ``ConnectionLost`` (their outcome is
unknown) and, with a ``Retry`` policy, a background task opens a new link and
re-sends every subscription's ``SUB`` before requests flow again. With several
servers it tries each once per round, beginning with the node after the one it
lost (``clients/servers.py``), and backs off only after a whole round failed.
An ``ERR`` with no request outstanding, and the ``ERR`` texts a broker only sends
as it hangs up, end a link; they are never taken as a reply. ``CLOSING`` is never
a reply either, but the link is read on until the broker closes it: in a shutdown
grace the broker still answers (the acks of what we hold) before it hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Final

from linemq.clients.backoff import Retry
from linemq.clients.errors import (
    CLOSING_REASONS,
    BrokerError,
    ConnectionLost,
    LinemqError,
    OutcomeUnknown,
    ProtocolError,
    Timeout,
    error_for,
)
from linemq.clients.lookups import encode_touch_progress
from linemq.clients.options import Duration
from linemq.clients.protocol import (
    HEARTBEAT,
    BlockLine,
    Closing,
    DlqLine,
    Err,
    Frame,
    FrameHead,
    GroupLine,
    HistoryLine,
    Msg,
    Ok,
    ServerLine,
    StatLine,
    encode_ack,
    encode_nack,
    encode_term,
    encode_touch,
    parse_server_line,
)
from linemq.clients.replies import PolicyLine, StatusLine
from linemq.clients.schedule_lines import ScheduleInfo
from linemq.clients.servers import Address, first_index, rotation
from linemq.clients.subscription import Subscription, to_message

# Longest server line we buffer. A MSG line is a PUB line plus ~60 bytes of id,
# offset and ts, and a DLQ line wraps the message in JSON, so this is well above
# any line limit the broker would accept from a publisher. A v2 frame's payload
# is read by its count, not as a line, so this does not bound it.
READ_LIMIT: Final = 16 * 1024 * 1024
DEFAULT_HEARTBEAT_INTERVAL: Final = 10.0
MIN_HEARTBEAT_INTERVAL: Final = 0.05
MAX_PUBLISH_RESENDS: Final = 3
"""How many new connections an id'd publish is sent again on before ``OutcomeUnknown``."""


class _Waiter:
    """One request awaiting its reply; ``block`` collects HISTORY/GROUP/DLQ lines."""

    __slots__ = ("block", "future")

    def __init__(self, future: asyncio.Future[tuple[str, list[BlockLine]]]) -> None:
        self.future = future
        self.block: list[BlockLine] = []


class Link:
    """One TCP connection: its streams, the waiters for its replies, its reader task."""

    __slots__ = ("closing", "reader", "reason", "task", "waiters", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.waiters: deque[_Waiter] = deque()
        self.task: asyncio.Task[None] | None = None
        self.reason: str | None = None  # set before we abort it ourselves
        self.closing: str | None = None  # the broker said CLOSING: why, when it hangs up


class Pipeline:
    """Request/reply plumbing over a link replaced when it dies; ``Client`` adds the commands."""

    def __init__(
        self,
        servers: tuple[Address, ...],
        heartbeat_interval: float | None,
        request_timeout: float | None,
        reconnect: Retry | None,
    ) -> None:
        if heartbeat_interval is not None and not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be positive, got {heartbeat_interval}")
        if request_timeout is not None and not request_timeout > 0:
            raise ValueError(f"request_timeout must be positive, got {request_timeout}")
        if not servers:
            raise ValueError("no server address given")
        self.servers = servers
        self.server: Address | None = None
        """The node of the current connection (None while not connected)."""
        self._next = first_index(len(servers))  # where the next round of attempts starts
        self.heartbeat_interval = heartbeat_interval
        self.request_timeout = request_timeout
        self.reconnect = reconnect
        self.protocol = 1
        self.server_settings: dict[str, float] = {}
        """What ``OK hello … k=v`` said (``heartbeat_timeout``…); empty for older brokers."""
        self.reconnects = 0
        """How many times a lost connection was replaced."""
        self._link: Link | None = None
        # Keyed by topic or pattern, in subscription order (the order patterns are tried).
        self._subs: dict[str, Subscription] = {}
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._closing = False
        self._lost: str | None = None

    @property
    def connected(self) -> bool:
        """Whether a link is up right now (False while reconnecting)."""
        return self._link is not None

    @property
    def server_closing(self) -> str | None:
        """Why the broker is ending the current connection (it said ``CLOSING``: shutting
        down, and for now still answering), else None."""
        link = self._link
        return None if link is None else link.closing

    async def heartbeat(self) -> None:
        await self._request(HEARTBEAT)

    async def ack(self, message_id: str) -> None:
        """Acknowledge a group delivery held by this connection."""
        await self._request(encode_ack(message_id))

    async def nack(
        self, message_id: str, delay: Duration | None = None, reason: str | None = None
    ) -> None:
        """Give a delivery back: redelivered at once, or after ``delay`` (``"5s"``, 1.5…);
        ``reason``: the error text kept with the attempt."""
        await self._request(encode_nack(message_id, delay, reason))

    async def term(self, message_id: str, reason: str | None = None) -> None:
        """Fail a delivery for good: dead-lettered now, with ``reason`` as its error text."""
        await self._request(encode_term(message_id, reason))

    async def touch(
        self, message_id: str, progress: float | None = None, note: str | None = None
    ) -> None:
        """Restart a delivery's ack timer, for long jobs; ``progress`` (0-100) and ``note``
        are recorded for ``STATUS``."""
        if progress is None and note is None:
            await self._request(encode_touch(message_id))
        else:
            await self._request(encode_touch_progress(message_id, progress, note))

    # --- opening (Client knows how) ----------------------------------------

    async def _open(self, address: Address) -> Link:
        raise NotImplementedError

    async def _open_any(self) -> Link:
        """One round: an attempt at each node, from ``_next`` on, until one takes us.

        A node that refuses (no banner, ``ERR`` instead of ``OK connected``, a handshake
        cut off) counts as down. A refused ``AUTH`` is raised at once: the same token
        would be refused by the next node too. With one server its own error is raised
        as it was; with several, ``ConnectionLost`` says what each one did.
        """
        failures = []
        for index in rotation(len(self.servers), self._next):
            address = self.servers[index]
            try:
                link = await self._open(address)
            except (OSError, ConnectionLost, Timeout, ProtocolError) as exc:
                if len(self.servers) == 1:
                    raise
                failures.append(f"{address}: {exc or type(exc).__name__}")
                continue
            self.server = address
            self._next = (index + 1) % len(self.servers)  # if this one is lost: the next first
            return link
        raise ConnectionLost("no server took the connection: " + "; ".join(failures))

    def _start_reader(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Link:
        link = Link(reader, writer)
        link.task = asyncio.create_task(self._read_loop(link), name="linemq-reader")
        return link

    async def _adopt(self, link: Link) -> None:
        """Make a handshaken link current: re-send every SUB on it first."""
        for sub in list(self._subs.values()):
            if not sub.confirmed:
                continue  # its own SUB is still waiting to go out: no need to send two
            try:
                line = sub.sub_line(resume=True, positions=self.protocol == 2)
                await self._request_on(link, line)
            except BrokerError as exc:  # e.g. permissions changed while we were away
                self._forget(sub, exc)
            else:
                sub._confirmed()
        if link.task is None or link.task.done():
            raise ConnectionLost(link.reason or "connection closed by server")
        self._link = link
        self._lost = None
        self._ensure_heartbeat()

    async def _drop(self, link: Link) -> None:
        link.reason = link.reason or "client closed"
        link.writer.close()
        if link.task is not None:
            link.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link.task
        self._fail_waiters(link, ConnectionLost(link.reason))

    # --- requests ----------------------------------------------------------

    async def _ready(self) -> Link:
        """The current link; while reconnecting, wait for it (up to the request timeout)."""
        if self._link is not None:
            return self._link
        task = self._reconnect_task
        if task is not None and not task.done() and not self._closing:
            try:
                await asyncio.wait_for(asyncio.shield(task), self.request_timeout)
            except TimeoutError:
                raise ConnectionLost(f"still reconnecting after: {self._lost}") from None
            if self._link is not None:
                return self._link
        raise ConnectionLost(self._lost or "client is not connected")

    def _send(self, link: Link, data: bytes, replies: int) -> list[_Waiter]:
        """Queue waiters and write, with no await between, so FIFO order is wire order."""
        if link.task is None or link.task.done():
            raise ConnectionLost(link.reason or "connection closed by server")
        loop = asyncio.get_running_loop()
        waiters = [_Waiter(loop.create_future()) for _ in range(replies)]
        link.waiters.extend(waiters)
        link.writer.write(data)
        return waiters

    async def _drain(self, link: Link) -> None:
        try:
            await link.writer.drain()
        except OSError as exc:
            raise ConnectionLost(f"connection lost: {exc}") from exc

    async def _wait(self, waiter: _Waiter, timeout: float | None) -> tuple[str, list[BlockLine]]:
        if timeout is None:
            return await waiter.future
        try:
            # On timeout the future is cancelled: its reply is still read, then dropped.
            return await asyncio.wait_for(waiter.future, timeout)
        except TimeoutError:
            if waiter.future.cancelled():
                raise Timeout(f"no reply within {timeout:g} s") from None
            raise

    async def _request(self, line: bytes) -> tuple[str, list[BlockLine]]:
        link = await self._ready()
        (waiter,) = self._send(link, line, 1)
        await self._drain(link)
        return await self._wait(waiter, self.request_timeout)

    async def _request_on(
        self, link: Link, line: bytes, timeout: float | None = None
    ) -> tuple[str, list[BlockLine]]:
        """A request on a link being opened (handshake and re-subscribing)."""
        (waiter,) = self._send(link, line, 1)
        await self._drain(link)
        return await self._wait(waiter, timeout or self.request_timeout)

    async def _publish(self, data: bytes, *, idempotent: bool) -> tuple[str, list[BlockLine]]:
        """A publish: ``OutcomeUnknown`` once it was sent and its link died before the reply.

        ``idempotent`` (it carries a publisher id) is sent again on the next link instead,
        as the broker stores a repeated id once; anything else is never sent twice.
        """
        resends = 0
        sent = False
        while True:
            try:
                link = await self._ready()
                (waiter,) = self._send(link, data, 1)
            except ConnectionLost as exc:
                if sent:
                    raise OutcomeUnknown(_unknown(exc, idempotent)) from exc
                raise  # never sent: nothing was stored
            sent = True
            try:
                await self._drain(link)
                return await self._wait(waiter, self.request_timeout)
            except ConnectionLost as exc:
                again = idempotent and self.reconnect is not None and not self._closing
                if not again or resends >= MAX_PUBLISH_RESENDS:
                    raise OutcomeUnknown(_unknown(exc, idempotent)) from exc
                resends += 1
                if link is self._link and link.task is not None:
                    # The write failed before the reader saw the loss: end the link, so
                    # the resend waits for the next one instead of this broken one.
                    self._abort(link, str(exc))
                    await asyncio.wait({link.task})

    # --- subscriptions -----------------------------------------------------

    async def _start_subscription(self, sub: Subscription) -> None:
        if sub.topic in self._subs:
            raise ValueError(f"already subscribed to {sub.topic!r} on this connection")
        # Registered before SUB goes out: the first MSG may follow the OK immediately.
        self._subs[sub.topic] = sub
        try:
            await self._request(sub.sub_line(resume=False, positions=True))
        except BaseException:
            self._forget(sub, None)  # later next() calls end instead of waiting forever
            raise
        sub._confirmed()
        self._ensure_heartbeat()

    def _forget(self, sub: Subscription, error: BaseException | None) -> None:
        if self._subs.get(sub.topic) is sub:
            del self._subs[sub.topic]
        sub._end(error)
        if not any(s.group is not None for s in self._subs.values()):
            self._stop_heartbeat()

    def _end_subscriptions(self, error: BaseException | None) -> None:
        for sub in list(self._subs.values()):
            self._forget(sub, error)

    # --- heartbeats --------------------------------------------------------

    def heartbeat_every(self) -> float:
        """The set interval, else a third of the broker's heartbeat timeout, else 10 s."""
        if self.heartbeat_interval is not None:
            return self.heartbeat_interval
        timeout = self.server_settings.get("heartbeat_timeout")
        if timeout is None or timeout <= 0:
            return DEFAULT_HEARTBEAT_INTERVAL
        return max(MIN_HEARTBEAT_INTERVAL, timeout / 3)

    def _ensure_heartbeat(self) -> None:
        has_group = any(s.group is not None for s in self._subs.values())
        if has_group and self._heartbeat_task is None and self._link is not None:
            self._heartbeat_task = asyncio.create_task(
                self._heartbeat_loop(), name="linemq-heartbeat"
            )

    async def _heartbeat_loop(self) -> None:
        """Keeps group memberships alive, and finds a dead link that TCP has not noticed."""
        while True:
            every = self.heartbeat_every()
            await asyncio.sleep(every)
            link = self._link
            if link is None:
                return
            try:
                (waiter,) = self._send(link, HEARTBEAT, 1)
                await self._drain(link)
                await self._wait(waiter, max(every, self.request_timeout or 0.0))
            except BrokerError:
                continue
            except Timeout:
                self._abort(link, "no reply to HEARTBEAT: connection presumed dead")
                return
            except ConnectionLost:
                return

    def _stop_heartbeat(self) -> None:
        task, self._heartbeat_task = self._heartbeat_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    # --- reading -----------------------------------------------------------

    async def _read_loop(self, link: Link) -> None:
        reason: str
        try:
            while True:
                line = parse_server_line(await link.reader.readuntil(b"\n"))
                if isinstance(line, FrameHead):
                    frame = line.complete(await link.reader.readexactly(line.nbytes + 1))
                    self._route(link, frame)
                    continue
                if isinstance(line, Closing):
                    link.closing = f"broker closed the connection: {line.reason}"
                    continue  # what it still answers counts: read on until it hangs up
                closing = self._closing_reason(link, line)
                if closing is not None:
                    reason = closing
                    break
                self._route(link, line)
        except asyncio.IncompleteReadError:
            reason = link.closing or "connection closed by server"
        except asyncio.LimitOverrunError:
            reason = f"server line longer than {READ_LIMIT} bytes"
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
        except OSError as exc:
            reason = link.closing or f"connection lost: {exc}"
        self._link_lost(link, link.reason or reason)

    @staticmethod
    def _closing_reason(link: Link, line: ServerLine) -> str | None:
        """Why the broker is hanging up, if this ``ERR`` says so rather than answering."""
        if isinstance(line, Err) and (not link.waiters or line.reason in CLOSING_REASONS):
            return f"broker closed the connection: {line.reason}"
        return None

    def _route(self, link: Link, line: ServerLine | Frame) -> None:
        match line:
            case Msg() | Frame(kind="MSG2"):
                sub = self._subscription_for(line.topic)
                # None: a late MSG after UNSUB; a group one is redelivered by the server.
                if sub is not None:
                    client = self if sub.group is not None else None
                    sub._deliver(to_message(line, sub.group, client))
            case (
                HistoryLine()
                | GroupLine()
                | DlqLine()
                | StatLine()
                | StatusLine()
                | PolicyLine()
                | ScheduleInfo()
                | Frame()
            ):
                if not link.waiters:
                    raise ProtocolError(f"{type(line).__name__} without a request")
                link.waiters[0].block.append(line)
            case Ok() | Err():
                if not link.waiters:
                    raise ProtocolError(f"reply without a request: {line}")
                waiter = link.waiters.popleft()
                if waiter.future.done():  # its caller timed out or was cancelled
                    return
                if isinstance(line, Err):
                    waiter.future.set_exception(error_for(line.reason))
                else:
                    waiter.future.set_result((line.text, waiter.block))

    def _subscription_for(self, topic: str) -> Subscription | None:
        exact = self._subs.get(topic)
        if exact is not None:
            return exact
        return next((s for s in self._subs.values() if s.matches(topic)), None)

    # --- losing a link -----------------------------------------------------

    def _abort(self, link: Link, reason: str) -> None:
        link.reason = reason
        transport = link.writer.transport
        transport.abort()

    def _fail_waiters(self, link: Link, error: LinemqError) -> None:
        while link.waiters:
            future = link.waiters.popleft().future
            if not future.done():
                future.set_exception(error)

    def _link_lost(self, link: Link, reason: str) -> None:
        link.reason = reason
        link.writer.close()
        self._fail_waiters(link, ConnectionLost(reason))
        if link is not self._link:
            return  # a link being opened, or one we closed ourselves
        self._link = None
        self.server = None
        self._lost = reason
        self._stop_heartbeat()
        for sub in self._subs.values():
            sub._link_lost()
        if self._closing:
            return
        if self.reconnect is None:
            self._end_subscriptions(ConnectionLost(reason))
            return
        self._reconnect_task = asyncio.create_task(
            self._reconnect_loop(self.reconnect, reason), name="linemq-reconnect"
        )

    async def _reconnect_loop(self, retry: Retry, reason: str) -> None:
        """Rounds over the servers; ``retry`` counts rounds (one node: attempts), so the
        backoff is between rounds and a live node in the list is reached without it."""
        failures = 0
        while not self._closing:
            delay = retry.delay(failures)
            if delay is None:
                self._give_up(ConnectionLost(f"{reason}; {failures} reconnect attempts failed"))
                return
            await asyncio.sleep(delay)
            try:
                await self._open_any()
            except (OSError, ConnectionLost, Timeout, ProtocolError) as exc:
                failures += 1
                self._lost = f"{reason}; reconnecting (last attempt: {exc})"
                continue
            except BrokerError as exc:  # refused for good (auth): trying again will not help
                self._give_up(exc)
                return
            except Exception as exc:  # a bug or a bad setting: say so rather than hang
                self._give_up(ConnectionLost(f"{reason}; reconnecting failed: {exc!r}"))
                return
            self.reconnects += 1
            return

    def _give_up(self, error: LinemqError) -> None:
        self._lost = str(error)
        self._end_subscriptions(error)


def _unknown(cause: ConnectionLost, idempotent: bool) -> str:
    advice = (
        "publishing again with the same id is safe"
        if idempotent
        else "publish with an id (put(..., id=...)) to have it retried safely"
    )
    return f"publish outcome unknown, it may or may not be stored ({cause}); {advice}"
