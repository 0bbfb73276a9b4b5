"""What a subscriber holds: delivered ``Message`` objects and the ``Subscription`` yielding them.

Kept apart from the connection machinery in ``aio.py``; a subscription only asks
its client to send ``SUB``/``UNSUB`` and to forget it, and the client's reader
fills its queue.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final, Protocol, Self

from linemq.clients.options import (
    MAX_DURATION,
    Duration,
    HeaderFilterSpec,
    Position,
    is_pattern,
    topic_matches,
)
from linemq.clients.protocol import Frame, HistoryLine, Msg, encode_sub, encode_unsub

RESUME_MARGIN: Final = 1.0
"""Seconds added when a fanout subscription that saw nothing resumes by time: more than
a round trip, so nothing published while it was away is missed (at worst a message from
just before it subscribed is delivered)."""


class Settler(Protocol):
    """What settles a group delivery: the connection that holds it (``Pipeline``).

    Declared here, below the pipeline, so this module needs nothing from it."""

    async def ack(self, message_id: str) -> None: ...

    async def nack(
        self, message_id: str, delay: Duration | None = None, reason: str | None = None
    ) -> None: ...

    async def term(self, message_id: str, reason: str | None = None) -> None: ...

    async def touch(
        self, message_id: str, progress: float | None = None, note: str | None = None
    ) -> None: ...


class SubscriptionHost(Settler, Protocol):
    """What a ``Subscription`` asks of its client: send SUB (and wait), send UNSUB, forget it."""

    async def _start_subscription(self, sub: Subscription) -> None: ...

    async def _request(self, line: bytes) -> object: ...

    def _forget(self, sub: Subscription, error: BaseException | None) -> None: ...


@dataclass(frozen=True, slots=True)
class Message:
    """A delivered (or historical) message; ``ack``/``nack``/``term``/``touch`` for groups.

    ``payload`` is the exact bytes over protocol v2; ``text`` is its UTF-8 view
    (invalid bytes replaced). Over v1 the broker sends one line of text, so
    ``payload`` is that text encoded, and ``priority``/``attempt`` are unknown (None).
    ``raw`` is the v1 ``MSG``/``HISTORY`` line (for v2, the one a v1 client would get).
    """

    topic: str
    id: str
    offset: int
    ts: float
    text: str
    group: str | None = None
    raw: str = field(default="", repr=False, compare=False)
    _client: Settler | None = field(default=None, repr=False, compare=False)
    payload: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    key: str | None = None
    priority: str | None = None
    attempt: int | None = None

    def __post_init__(self) -> None:
        if not self.payload and self.text:
            object.__setattr__(self, "payload", self.text.encode())

    async def ack(self) -> None:
        """Done with it: the group never delivers it again."""
        await self._settler().ack(self.id)

    async def nack(self, delay: Duration | None = None, reason: str | None = None) -> None:
        """Give it back: redelivered after the group's retry backoff (``delay=0``: now; a
        broker before policies, or a group with ``nack_backoff`` off: now), or after ``delay``
        (``"5s"``, ``1.5``, ``timedelta``). ``reason`` (an error text) is kept with the
        attempt and shown in the dead letter."""
        await self._settler().nack(self.id, delay, reason)

    async def term(self, reason: str | None = None) -> None:
        """Fail it for good: dead-lettered now, no retries left, with ``reason`` as its error."""
        await self._settler().term(self.id, reason)

    async def touch(self, progress: float | None = None, note: str | None = None) -> None:
        """Still working on it: restart the ack timer; ``progress`` (0-100) and ``note`` say
        how far, for ``Client.status``."""
        await self._settler().touch(self.id, progress, note)

    def _settler(self) -> Settler:
        if self._client is None:
            raise ValueError("only consumer-group deliveries can be acked, nacked or touched")
        return self._client


def to_message(
    line: Msg | HistoryLine | Frame, group: str | None = None, client: Settler | None = None
) -> Message:
    """A ``Message`` from a v1 line or a v2 frame; ``client`` set makes it ackable."""
    if isinstance(line, Frame):
        text = line.payload.decode("utf-8", errors="replace")
        return Message(
            line.topic,
            line.id,
            line.offset,
            line.ts,
            text,
            group,
            line.raw,
            client,
            payload=line.payload,
            headers=line.headers,
            key=line.key,
            priority=line.priority,
            attempt=line.attempt,
        )
    return Message(line.topic, line.id, line.offset, line.ts, line.text, group, line.raw, client)


class _End:
    """Queued after a subscription's last message; ``error`` set if it ended by failure."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Subscription:
    """Deliveries for one topic or pattern (optionally as a group member) on one connection.

    The queue is unbounded on purpose: the reader must never stop on a slow
    consumer, or the ``OK`` for that consumer's own ``ACK`` would sit behind the
    message it cannot enqueue. Group deliveries are bounded by the server's
    in-flight limit; a fanout subscriber that falls far behind should drop it.

    When the client reconnects it subscribes again: a group member re-joins (the
    broker redelivers what it had not acked), and an exact-topic fanout
    subscription resumes after the last offset it received, so it misses nothing
    the broker still stores. A wildcard fanout subscription resumes live.
    """

    def __init__(
        self,
        client: SubscriptionHost,
        topic: str,
        group: str | None,
        start: Position | None = None,
        ordering: str | None = None,
        filter: HeaderFilterSpec | None = None,
    ) -> None:
        self.topic = topic
        self.group = group
        self.start_at = start
        self.ordering = ordering  # sent again on every re-SUB: the group keeps its own
        self.filter = filter  # likewise
        self._client = client
        self._queue: asyncio.Queue[Message | _End] = asyncio.Queue()
        self._started = False
        self._ended = False
        self.last_offset: int | None = None
        """The offset of the last fanout delivery received, where a resume starts after."""
        self._confirmed_at: float | None = None
        self.epoch = 0
        """How many connections this subscription outlived. A group delivery taken (``next``)
        in an earlier epoch was taken back by the broker, and is redelivered."""

    async def start(self) -> Self:
        """Send ``SUB`` and wait for its ``OK``; idempotent."""
        if not self._started:
            self._started = True
            await self._client._start_subscription(self)
        return self

    async def next(self) -> Message:
        """Next message, like ``anext(sub)``.

        Raises ``StopAsyncIteration`` after unsubscribe/close, and ``ConnectionLost``
        (or the broker's error) once the connection is gone for good; a connection
        that is being re-established only makes it wait.
        """
        await self.start()
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # every later call ends the same way
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def unsubscribe(self) -> None:
        """Send ``UNSUB``; messages received until its ``OK`` are still yielded, then it stops."""
        if self._started and not self._ended:
            try:
                await self._client._request(encode_unsub(self.topic, self.group))
            finally:
                self._client._forget(self, None)

    def matches(self, topic: str) -> bool:
        """Whether a delivery for ``topic`` can be for this subscription."""
        return topic == self.topic or (is_pattern(self.topic) and topic_matches(self.topic, topic))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        return await self.next()

    def sub_line(self, *, resume: bool, positions: bool) -> bytes:
        """The ``SUB`` to send: first time, or (``resume``) after a reconnect.

        ``positions`` False (a broker without ``from=``, or protocol 1) resumes live.
        """
        start = self.start_at
        if resume and self.group is None and not is_pattern(self.topic):
            start = self._resume_at() if positions else None
        return encode_sub(self.topic, self.group, start, self.ordering, self.filter)

    def _resume_at(self) -> Position | None:
        if self.last_offset is not None:
            return self.last_offset + 1
        if self._confirmed_at is None:
            return self.start_at
        away = time.monotonic() - self._confirmed_at
        if isinstance(self.start_at, timedelta):
            return self.start_at + timedelta(seconds=away)
        if self.start_at is not None and self.start_at != "latest":
            return self.start_at
        # Nothing received yet: whatever was published since we subscribed. "ago:" is
        # measured on the broker's clock, so the two clocks need not agree.
        return timedelta(seconds=min(away + RESUME_MARGIN, MAX_DURATION))

    @property
    def confirmed(self) -> bool:
        """Whether the broker has said ``OK subscribed`` (on some connection) yet."""
        return self._confirmed_at is not None

    def _confirmed(self) -> None:
        if self._confirmed_at is None:
            self._confirmed_at = time.monotonic()

    def _deliver(self, message: Message) -> None:
        if self.group is None:
            self.last_offset = message.offset
        self._queue.put_nowait(message)

    def _link_lost(self) -> None:
        """Drop queued group deliveries: the broker takes them back and redelivers them."""
        self.epoch += 1
        if self.group is None:
            return
        kept = [item for item in _drain(self._queue) if isinstance(item, _End)]
        for item in kept:
            self._queue.put_nowait(item)

    def _end(self, error: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_End(error))


def _drain(queue: asyncio.Queue[Message | _End]) -> list[Message | _End]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


class Subscribing:
    """What ``Client.subscribe`` returns: ``await`` it for a live ``Subscription``.

    ``async for m in client.subscribe(...)`` (without ``await``) still works but
    is deprecated: it subscribes lazily, on the first iteration.
    """

    def __init__(self, sub: Subscription) -> None:
        self._sub = sub

    def __await__(self) -> Generator[Any, None, Subscription]:
        return self._sub.start().__await__()

    async def start(self) -> Subscription:
        """The same as awaiting it (older code called ``start()``)."""
        return await self._sub.start()

    def __aiter__(self) -> Subscription:
        warnings.warn(
            "async for over client.subscribe(...) subscribes lazily; "
            "use `async for m in await client.subscribe(...)`",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._sub
