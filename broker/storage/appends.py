"""Records held until the commit: the half of ``LogStore`` that ``MemoryStore`` and
``PostgresStore`` share.

Both store what a tick appended at its ``commit``. ``MemoryStore`` numbers a
topic's records at append, from a counter it keeps per topic (``_append``);
``PostgresStore`` overrides ``_append`` and lets the database number them when it
stores them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from linemq.broker.storage.log_state import check_topic_name
from linemq.broker.storage.records import Meta, Record, StorageError
from linemq.broker.storage.ticket import Appended, Ticket, failed_ticket


class Tail(Protocol):
    """A topic's counter and what was appended to it since the last commit."""

    last: int
    first_offset: int
    pending: list[Record]
    meta_last_offset: int


L = TypeVar("L", bound=Tail)


class AppendBuffer(Generic[L]):
    """``ticket``, ``append`` and ``append_batch`` of ``LogStore``, over logs of type ``L``,
    and the topics: ``topic`` and ``get`` (a log is its topic's view), and deleted names
    going on above the offsets they gave out."""

    offsets_at_commit = False
    """True for a store whose commit gives the offsets (log_store.offsets_at_commit):
    appended records carry offset 0 until then."""

    def __init__(self, new_log: Callable[[int], L]) -> None:
        self._logs: dict[str, L] = {}
        self._ticket = Ticket()
        self._touched: dict[str, L] = {}  # appended to since the last commit
        self._new_log = new_log  # takes the last offset given out before
        self._floors: dict[str, int] = {}  # deleted topics' next offsets
        self._deleting: set[str] = set()

    @property
    def ticket(self) -> Ticket:
        return self._ticket

    def _log(self, topic: str) -> L:
        log = self._logs.get(topic)
        if log is None:
            if topic in self._deleting:
                raise StorageError(f"topic {topic} is being deleted")
            try:
                check_topic_name(topic)
            except ValueError as exc:
                raise StorageError(str(exc)) from exc
            log = self._logs[topic] = self._new_log(self._floors.get(topic, 1) - 1)
        return log

    def topic(self, name: str) -> L:
        if name not in self._logs and name not in self._deleting:
            check_topic_name(name)  # ValueError, as for the file store
        return self._log(name)

    def get(self, name: str) -> L | None:
        return self._logs.get(name)

    def topics(self) -> list[str]:
        return sorted(self._logs)

    def last_offset(self, topic: str) -> int:
        log = self._logs.get(topic)
        return 0 if log is None else log.last

    def first_offset(self, topic: str) -> int:
        log = self._logs.get(topic)
        return 1 if log is None else log.first_offset

    def _detach(self, names: Sequence[str]) -> None:
        """``delete_topics``' first step: the names are no longer served."""
        for name in names:
            log = self._logs.pop(name, None)
            if log is not None and log.last:
                self._floors[name] = log.last + 1
            self._touched.pop(name, None)
        self._deleting.update(names)

    def _append(
        self, topic: str, msgs: Sequence[str], ts: float, ids: Sequence[str], meta: Meta | None
    ) -> list[Record]:
        if len(msgs) != len(ids):
            raise StorageError("one id per message")
        log = self._log(topic)
        if self.offsets_at_commit:
            records = [Record(0, id, ts, msg, meta) for id, msg in zip(ids, msgs, strict=True)]
        else:
            first = log.last + 1
            records = [
                Record(offset, id, ts, msg, meta)
                for offset, id, msg in zip(range(first, first + len(msgs)), ids, msgs, strict=True)
            ]
            log.last += len(records)
            if meta is not None:
                log.meta_last_offset = log.last
        log.pending += records
        self._touched[topic] = log
        return records

    def append(
        self,
        topic: str,
        msgs: Sequence[str],
        ts: float,
        ids: Sequence[str],
        meta: Meta | None = None,
    ) -> Appended:
        try:
            records = self._append(topic, msgs, ts, ids, meta)
        except StorageError as exc:
            return failed_ticket(topic, exc)
        return Appended(topic, records, self._ticket)

    def append_batch(
        self, batch: Mapping[str, Sequence[str]], ts: float, ids: Sequence[str]
    ) -> Ticket:
        start = 0
        for topic, msgs in batch.items():
            end = start + len(msgs)
            try:
                self._append(topic, msgs, ts, ids[start:end], None)
            except StorageError as exc:
                self._ticket.failed(topic, exc)
            start = end
        return self._ticket
