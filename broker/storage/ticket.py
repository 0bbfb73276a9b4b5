"""What an append returns: a ticket that resolves once the records are durable.

Every append made between two ``commit`` calls of a store shares one ``Ticket``,
the way a database transaction covers every statement in it: the broker appends
what a tick gathered, commits once, and everyone waiting on that tick waits on
one object. A topic whose records could not be stored has its error in
``errors``; the ticket still resolves, so one failing topic never holds the
others' replies. ``Appended`` is one append's view of it: its records, and an
``await`` that raises that topic's error.

Callbacks run synchronously at resolution (the broker's replies go out in the
same tick); ``await`` is for callers that can wait a loop iteration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any

from linemq.broker.storage.records import Record, StorageError


class Ticket:
    """One commit's worth of appends; ``done`` once they are durable per the store's policy."""

    __slots__ = ("_callbacks", "_done", "_future", "errors")

    def __init__(self) -> None:
        self.errors: dict[str, StorageError] = {}
        self._done = False
        self._callbacks: list[Callable[[Ticket], None]] = []
        self._future: asyncio.Future[None] | None = None

    def done(self) -> bool:
        return self._done

    def failed(self, topic: str, error: StorageError) -> None:
        """``topic``'s records in this ticket were not stored (the first error is kept)."""
        self.errors.setdefault(topic, error)

    def add_done_callback(self, callback: Callable[[Ticket], None]) -> None:
        if self._done:
            callback(self)
        else:
            self._callbacks.append(callback)

    def resolve(self) -> None:
        if self._done:
            return
        self._done = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def __await__(self) -> Generator[Any, None, None]:
        if not self._done:
            if self._future is None:
                self._future = asyncio.get_running_loop().create_future()
            yield from self._future.__await__()


class Appended:
    """One append: its records (offsets in order) once its ticket has resolved."""

    __slots__ = ("records", "ticket", "topic")

    def __init__(self, topic: str, records: list[Record], ticket: Ticket) -> None:
        self.topic = topic
        self.records = records
        self.ticket = ticket

    def __await__(self) -> Generator[Any, None, list[Record]]:
        yield from self.ticket.__await__()
        error = self.ticket.errors.get(self.topic)
        if error is not None:
            raise error
        return self.records


def failed_ticket(topic: str, error: StorageError) -> Appended:
    """An append refused before it was made (the topic cannot be opened): already resolved."""
    ticket = Ticket()
    ticket.failed(topic, error)
    ticket.resolve()
    return Appended(topic, [], ticket)
