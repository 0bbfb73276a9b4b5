"""What the engine asks of the faces above it, stated here so it imports none of them.

The server implements these: its connections are ``Publisher``s, its reply slots
``WriteWaiter``s, and the broker itself ``Replies``. The engine decides when a reply
may go and whether it failed; the server renders the bytes.
"""

from __future__ import annotations

from typing import Protocol

from linemq.broker.storage.records import StorageError


class Publisher(Protocol):
    """A connection as the publish path sees it."""

    @property
    def holds_replies(self) -> bool:
        """A reply is still waiting: a new one must queue behind it, not go out now."""
        ...

    def published(self) -> None:
        """A lone publish's record is with the OS: answer it now."""
        ...


class WriteWaiter(Protocol):
    """A reply waiting for a journal (or log) write (``Engine.after_write``)."""

    def written(self, gen: int) -> None:
        """Written as generation ``gen``: it goes out once that generation is durable."""
        ...

    def failed(self, error: StorageError) -> None: ...


class Replies(Protocol):
    """The faces' replies, as the tick sees them."""

    def pending(self) -> bool:
        """Replies are held or output is queued: the tick must run."""
        ...

    def release(self, durable_gen: int) -> None:
        """Generations up to ``durable_gen`` are durable: release what waited, flush."""
        ...
