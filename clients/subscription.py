"""What a subscriber holds: delivered ``Message`` objects and the ``Subscription`` yielding them.

Kept apart from the connection machinery in ``aio.py``; a subscription only asks
its client to send ``SUB``/``UNSUB`` and to forget it, and the client's reader
fills its queue.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from clients.protocol import encode_unsub

if TYPE_CHECKING:
    from clients.aio import Client


@dataclass(frozen=True, slots=True)
class Message:
    """A delivered (or historical) message; ``ack``/``nack``/``touch`` for group deliveries."""

    topic: str
    id: str
    offset: int
    ts: float
    text: str
    group: str | None = None
    raw: str = field(default="", repr=False, compare=False)
    _client: Client | None = field(default=None, repr=False, compare=False)

    async def ack(self) -> None:
        await self._settler().ack(self.id)

    async def nack(self, delay: float | None = None) -> None:
        await self._settler().nack(self.id, delay)

    async def touch(self) -> None:
        await self._settler().touch(self.id)

    def _settler(self) -> Client:
        if self._client is None:
            raise ValueError("only consumer-group deliveries can be acked, nacked or touched")
        return self._client


class _End:
    """Queued after a subscription's last message; ``error`` set if the connection died."""

    __slots__ = ("error",)

    def __init__(self, error: str | None) -> None:
        self.error = error


class Subscription:
    """Deliveries for one topic (optionally as a group member) on one connection.

    The queue is unbounded on purpose: the reader must never stop on a slow
    consumer, or the ``OK`` for that consumer's own ``ACK`` would sit behind the
    message it cannot enqueue. Group deliveries are bounded by the server's
    in-flight limit; a fanout subscriber that falls far behind should drop it.
    """

    def __init__(self, client: Client, topic: str, group: str | None) -> None:
        self.topic = topic
        self.group = group
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
