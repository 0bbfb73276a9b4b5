"""What a subscriber holds: delivered ``Message`` objects and the ``Subscription`` yielding them.

Kept apart from the connection machinery in ``aio.py``; a subscription only asks
its client to send ``SUB``/``UNSUB`` and to forget it, and the client's reader
fills its queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from clients.options import Position, is_pattern, topic_matches
from clients.protocol import Frame, HistoryLine, Msg, encode_unsub

if TYPE_CHECKING:
    from clients.pipeline import Pipeline


@dataclass(frozen=True, slots=True)
class Message:
    """A delivered (or historical) message; ``ack``/``nack``/``touch`` for group deliveries.

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
    _client: Pipeline | None = field(default=None, repr=False, compare=False)
    payload: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    key: str | None = None
    priority: str | None = None
    attempt: int | None = None

    def __post_init__(self) -> None:
        if not self.payload and self.text:
            object.__setattr__(self, "payload", self.text.encode())

    async def ack(self) -> None:
        await self._settler().ack(self.id)

    async def nack(self, delay: float | None = None) -> None:
        await self._settler().nack(self.id, delay)

    async def touch(self) -> None:
        await self._settler().touch(self.id)

    def _settler(self) -> Pipeline:
        if self._client is None:
            raise ValueError("only consumer-group deliveries can be acked, nacked or touched")
        return self._client


def to_message(
    line: Msg | HistoryLine | Frame, group: str | None = None, client: Pipeline | None = None
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
    """Queued after a subscription's last message; ``error`` set if the connection died."""

    __slots__ = ("error",)

    def __init__(self, error: str | None) -> None:
        self.error = error


class Subscription:
    """Deliveries for one topic or pattern (optionally as a group member) on one connection.

    The queue is unbounded on purpose: the reader must never stop on a slow
    consumer, or the ``OK`` for that consumer's own ``ACK`` would sit behind the
    message it cannot enqueue. Group deliveries are bounded by the server's
    in-flight limit; a fanout subscriber that falls far behind should drop it.
    """

    def __init__(
        self, client: Pipeline, topic: str, group: str | None, start: Position | None = None
    ) -> None:
        self.topic = topic
        self.group = group
        self.start_at = start
        self._client = client
        self._queue: asyncio.Queue[Message | _End] = asyncio.Queue()
        self._started = False
        self._ended = False

    async def start(self) -> Self:
        """Send ``SUB`` and wait for its ``OK``; idempotent."""
        if not self._started:
            self._started = True
            await self._client._start_subscription(self)
        return self

    async def next(self) -> Message:
        """Next message, like ``anext(sub)``.

        Raises ``StopAsyncIteration`` after unsubscribe/close, ``ConnectionError`` on loss.
        """
        await self.start()
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # every later call ends the same way
            if item.error is not None:
                raise ConnectionError(item.error)
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

    def _deliver(self, message: Message) -> None:
        self._queue.put_nowait(message)

    def _end(self, error: str | None) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_End(error))
