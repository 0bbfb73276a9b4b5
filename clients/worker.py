"""``await client.process(topic, group, handler)``: a consumer-group worker that drains.

Each delivery runs ``await handler(message)``, at most ``concurrency`` at a time.
What the handler does decides what the broker is told (``outcome``, a pure
function): it returns, the message is acked; it raises ``Terminate``, it is
dead-lettered now (``TERM``, with the reason); ``RetryLater``, nacked with its
delay; any other exception, nacked with the exception's text as the reason (after
``retry_backoff``'s delay when one is set, else as the broker's retry policy says).

Messages the worker holds, running or waiting for a free slot, are touched every
third of the broker's ack timeout, so a long job is not taken back (``auto_extend``);
``timeout`` bounds a handler's run (it is cancelled and the message nacked).

Stopping (``stop()``, a cancel of ``run()``, leaving ``async with``): nothing new is
started; running handlers get up to ``grace`` seconds to finish and are settled as
usual; after that (or at a second ``stop()``) the rest are cancelled. Then the
worker unsubscribes, which gives back every message it still holds without counting
an attempt against it: its handler never ran, or the worker cut it short.
Reconnects are the client's: deliveries of a lost connection are dropped (the
broker redelivers them), and the worker carries on with the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Literal, Protocol, Self, TypedDict

from linemq.clients.backoff import ExponentialBackoff
from linemq.clients.errors import LinemqError
from linemq.clients.options import Duration, HeaderFilterSpec, Position, to_seconds
from linemq.clients.subscription import Message, Subscribing, Subscription

log = logging.getLogger("linemq.worker")

DEFAULT_GRACE: Final = 30.0
DEFAULT_TOUCH_EVERY: Final = 10.0
"""Seconds between touches when the broker does not say its ack timeout (a third of 30 s)."""
MAX_REASON_SENT: Final = 4000
"""Bytes of an error text sent (the broker keeps 1,000 and marks the cut); bounds the line."""

Handler = Callable[[Message], Awaitable[object]]


class Terminate(Exception):
    """Raise from a handler to fail the message for good: dead-lettered now (``TERM``)."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "")
        self.reason = reason


class RetryLater(Exception):
    """Raise from a handler to give the message back, redelivered after ``delay``."""

    def __init__(self, delay: Duration | None = None, reason: str | None = None) -> None:
        super().__init__(reason or "")
        self.delay = None if delay is None else to_seconds(delay)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the broker is told about one message."""

    verb: Literal["ack", "nack", "term"]
    delay: float | None = None
    reason: str | None = None


def outcome(
    error: BaseException | None, attempt: int | None, backoff: ExponentialBackoff | None = None
) -> Outcome:
    """The settlement of a handler's run: pure, so the policy is tested without a broker.

    ``attempt`` is the delivery's (1 the first time; None over protocol 1, taken as 1).
    """
    if error is None:
        return Outcome("ack")
    if isinstance(error, Terminate):
        return Outcome("term", reason=_cut(error.reason) if error.reason else None)
    if isinstance(error, RetryLater):
        return Outcome("nack", error.delay, _cut(error.reason) if error.reason else None)
    delay = None if backoff is None else backoff.compute(attempt or 1)
    return Outcome("nack", delay, error_text(error))


def error_text(error: BaseException) -> str:
    """``TypeName: message`` on one line, cut to what is worth sending."""
    said = " ".join(str(error).split())
    name = type(error).__name__
    return _cut(f"{name}: {said}" if said else name)


def _cut(text: str) -> str:
    data = text.encode()
    if len(data) <= MAX_REASON_SENT:
        return text
    return data[:MAX_REASON_SENT].decode(errors="ignore")


class HandlerTimeout(Exception):
    """A handler ran past the worker's ``timeout``; it was cancelled."""


@dataclass(slots=True)
class WorkerStats:
    """Counts since the worker started; ``lost``: a settlement the broker did not take (the
    connection dropped, or the message was taken back meanwhile: it is redelivered)."""

    acked: int = 0
    nacked: int = 0
    terminated: int = 0
    timed_out: int = 0
    lost: int = 0


class WorkerOptions(TypedDict, total=False):
    """``Worker``'s keyword options, as ``Client.process`` and ``Client.worker`` take them."""

    concurrency: int
    timeout: Duration | None
    grace: Duration
    retry_backoff: ExponentialBackoff | None
    auto_extend: bool
    touch_every: Duration | None
    start: Position | None
    ordering: str | None
    filter: HeaderFilterSpec | None


class Consumer(Protocol):
    """What a worker needs of a client (``Client`` is one)."""

    server_settings: dict[str, float]

    def subscribe(
        self,
        topic: str,
        group: str | None = None,
        start: Position | None = None,
        ordering: str | None = None,
        filter: HeaderFilterSpec | None = None,
    ) -> Subscribing: ...


class _Held:
    """A delivery the worker holds: waiting for a slot, or running."""

    __slots__ = ("epoch", "message", "settling", "task", "touched")

    def __init__(self, message: Message, epoch: int) -> None:
        self.message = message
        self.epoch = epoch
        self.touched = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.settling = False


class Worker:
    """Runs ``handler`` for each delivery of ``group`` on ``topic``; see the module doc.

    ``await worker.run()`` until ``stop()`` or a cancel; or ``async with worker:``,
    which runs it in the background and drains on leaving.
    """

    def __init__(
        self,
        client: Consumer,
        topic: str,
        group: str,
        handler: Handler,
        *,
        concurrency: int = 1,
        timeout: Duration | None = None,
        grace: Duration = DEFAULT_GRACE,
        retry_backoff: ExponentialBackoff | None = None,
        auto_extend: bool = True,
        touch_every: Duration | None = None,
        start: Position | None = None,
        ordering: str | None = None,
        filter: HeaderFilterSpec | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be 1 or more, got {concurrency}")
        self.client = client
        self.topic = topic
        self.group = group
        self.handler = handler
        self.concurrency = concurrency
        self.timeout = None if timeout is None else to_seconds(timeout)
        self.grace = to_seconds(grace)
        self.retry_backoff = retry_backoff
        self.auto_extend = auto_extend
        self.touch_every = None if touch_every is None else to_seconds(touch_every)
        if self.touch_every is not None and self.touch_every <= 0:
            raise ValueError("touch_every must be positive")
        self.start = start
        self.ordering = ordering
        self.filter = filter
        self.stats = WorkerStats()
        self._waiting: deque[_Held] = deque()
        self._running: dict[asyncio.Task[None], _Held] = {}
        self._changed = asyncio.Event()
        self._stopping = False
        self._hurry = False
        self._started = False
        self._subscribed = asyncio.Event()
        self._background: asyncio.Task[None] | None = None
        self._settings: dict[str, float] = {}
        """The topic's ``ack_timeout`` and ``max_inflight`` (``POLICY``), over the broker's."""

    @property
    def running(self) -> int:
        """Handlers running now."""
        return len(self._running)

    def stop(self) -> None:
        """Start nothing new, let running handlers finish (up to ``grace``), then leave.

        A second call cuts the grace short. Safe from a signal handler on the loop.
        """
        if self._stopping:
            self._hurry = True
        self._stopping = True
        self._changed.set()

    # -- running -------------------------------------------------------------------

    async def run(self) -> None:
        """Work until ``stop()``, a cancel (drains, then re-raises) or the client giving up
        (``ConnectionLost``, after the drain)."""
        if self._started:
            raise RuntimeError("a Worker runs once; make another")
        self._started = True
        sub = await self.client.subscribe(
            self.topic, self.group, self.start, self.ordering, self.filter
        )
        await self._read_policy()
        self._subscribed.set()
        self._check_concurrency()
        pull = asyncio.create_task(self._pull(sub), name="linemq-worker-pull")
        extend = asyncio.create_task(self._extend(sub), name="linemq-worker-extend")
        try:
            await self._dispatch(sub, pull)
        except asyncio.CancelledError:
            self.stop()
            await self._drain(sub, pull, extend)  # a second cancel here leaves at once
            raise
        await self._drain(sub, pull, extend)
        if pull.done() and not pull.cancelled() and (error := pull.exception()) is not None:
            raise error

    async def __aenter__(self) -> Self:
        self._background = asyncio.create_task(self.run(), name="linemq-worker")
        subscribed = asyncio.create_task(self._subscribed.wait())
        await asyncio.wait({self._background, subscribed}, return_when=asyncio.FIRST_COMPLETED)
        subscribed.cancel()
        if self._background.done():
            self._background.result()  # subscribing failed: say why
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._background is not None:
            await self._background

    async def _read_policy(self) -> None:
        """A ``--topic-policy`` or the group's own policy (``POLICY <topic> <group>``, read
        once here) may give it its own ack timeout and max in flight: the touches must come
        before that timeout, not the broker-wide one. A wildcard topic, or a broker without
        ``POLICY``, keeps the broker's settings; one without a group's, the topic's."""
        policy = getattr(self.client, "policy", None)
        if policy is None or "*" in self.topic or ">" in self.topic:
            return
        group_policy = getattr(self.client, "group_policy", None)
        found = None
        if group_policy is not None:
            try:
                found = await group_policy(self.topic, self.group)
            except LinemqError as exc:
                log.debug("no group policy for %s %s: %s", self.topic, self.group, exc)
        if found is None:
            try:
                found = await policy(self.topic)
            except LinemqError as exc:
                log.debug("no topic policy for %s: %s", self.topic, exc)
                return
        self._settings = {"ack_timeout": found.ack_timeout, "max_inflight": found.max_inflight}

    def _setting(self, name: str) -> float | None:
        return self._settings.get(name, self.client.server_settings.get(name))

    def _check_concurrency(self) -> None:
        limit = self._setting("max_inflight")
        if limit is not None and self.concurrency > limit:
            log.warning(
                "concurrency %d is more than the broker's max_inflight %g per connection: "
                "at most %g handlers will run at once",
                self.concurrency,
                limit,
                limit,
            )

    async def _pull(self, sub: Subscription) -> None:
        """Take deliveries as they come (so held ones are touched); StopAsyncIteration ends."""
        with contextlib.suppress(StopAsyncIteration):
            while True:
                message = await sub.next()
                self._waiting.append(_Held(message, sub.epoch))
                self._changed.set()

    async def _dispatch(self, sub: Subscription, pull: asyncio.Task[None]) -> None:
        while not self._stopping:
            while self._waiting and len(self._running) < self.concurrency:
                held = self._waiting.popleft()
                if held.epoch != sub.epoch:
                    continue  # from a lost connection: the broker redelivers it
                task = asyncio.create_task(self._handle(held, sub))
                held.task = task
                self._running[task] = held
            if pull.done() and not self._waiting:
                return  # unsubscribed elsewhere, or the client gave up
            self._changed.clear()
            await self._changed.wait()

    async def _handle(self, held: _Held, sub: Subscription) -> None:
        message = held.message
        error: BaseException | None = None
        try:
            limit = asyncio.timeout(self.timeout)
            try:
                async with limit:
                    await self.handler(message)
            except TimeoutError as exc:
                error = exc
                if limit.expired():  # ours, not one the handler raised
                    error = HandlerTimeout(f"handler timed out after {self.timeout:g} s")
                    self.stats.timed_out += 1
            except Exception as exc:
                error = exc
            held.settling = True
            await self._settle(held, sub, outcome(error, message.attempt, self.retry_backoff))
        finally:
            if held.task is not None:
                self._running.pop(held.task, None)
            self._changed.set()

    async def _settle(self, held: _Held, sub: Subscription, result: Outcome) -> None:
        message = held.message
        try:
            if result.verb == "ack":
                await message.ack()
                self.stats.acked += 1
                return
            if result.verb == "term":
                await message.term(result.reason)
                self.stats.terminated += 1
            else:
                await message.nack(result.delay, result.reason)
                self.stats.nacked += 1
        except LinemqError as exc:
            self.stats.lost += 1
            stale = " (from a lost connection)" if held.epoch != sub.epoch else ""
            log.warning(
                "%s of %s not taken%s: %s; the broker delivers it again",
                result.verb.upper(),
                message.id,
                stale,
                exc,
            )
            return
        log.warning(
            "%s %s (attempt %s): %s",
            "terminated" if result.verb == "term" else "nacked",
            message.id,
            message.attempt if message.attempt is not None else "?",
            result.reason or "-",
        )

    # -- keeping held messages -------------------------------------------------------

    def _touch_interval(self) -> float:
        if self.touch_every is not None:
            return self.touch_every
        ack_timeout = self._setting("ack_timeout")
        return ack_timeout / 3 if ack_timeout else DEFAULT_TOUCH_EVERY

    async def _extend(self, sub: Subscription) -> None:
        """TOUCH what the worker holds before the broker's ack timer takes it back."""
        if not self.auto_extend:
            return
        while True:
            every = self._touch_interval()
            await asyncio.sleep(every / 2)
            due = time.monotonic() - every
            held = [
                h
                for h in (*self._waiting, *self._running.values())
                if h.touched <= due and h.epoch == sub.epoch and not h.settling
            ]
            if not held:
                continue
            now = time.monotonic()
            results = await asyncio.gather(
                *(h.message.touch() for h in held), return_exceptions=True
            )
            for h, result in zip(held, results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, LinemqError):
                    raise result
                h.touched = now

    # -- stopping --------------------------------------------------------------------

    async def _drain(
        self, sub: Subscription, pull: asyncio.Task[None], extend: asyncio.Task[None]
    ) -> None:
        pull.cancel()
        try:
            await self._wait_running()
        finally:  # also when cancelled again meanwhile: no handler outlives the worker
            cut = [t for t, h in self._running.items() if not h.settling]
            for task in cut:
                task.cancel()
            if cut:
                log.warning("stopping: %d handlers cut short, given back unsettled", len(cut))
            extend.cancel()
        await asyncio.gather(*self._running, pull, extend, return_exceptions=True)
        self._waiting.clear()
        # Gives back what is still held (never started, or cut short) without counting
        # an attempt against it, as a member that leaves does.
        with contextlib.suppress(LinemqError, ConnectionError):
            await sub.unsubscribe()

    async def _wait_running(self) -> None:
        if not self._running:
            return
        log.info("stopping: waiting up to %g s for %d running", self.grace, len(self._running))
        deadline = time.monotonic() + self.grace
        while self._running and not self._hurry:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
