"""A memory store that answers its commits later, as a database does: when the test says.

``commit`` returns the ``Commit`` unsettled; ``settle`` says what it stored, in any
order the test picks, and can fail topics. Like a real store, each topic's view
shows a commit's records only once the topic's earlier commits have settled.

``LaterStore(at_commit=True)`` also gives offsets only when a commit settles, as a
database several nodes share does (``next_offset`` under the topic's row lock):
records are appended with offset 0, and the broker learns their offsets from the
resolved ``Appended``. Then each topic's commits settle in the order they were made
(the order the row lock serialises them in).
"""

from __future__ import annotations

from collections import deque

from linemq.broker.storage.log_store import Commit
from linemq.broker.storage.memory_store import MemoryStore, _Log
from linemq.broker.storage.records import Record, StorageError
from linemq.broker.storage.ticket import Ticket

FAILED = "storage unavailable: the test failed it"


class LaterStore(MemoryStore):
    def __init__(self, *, at_commit: bool = False) -> None:
        super().__init__()
        self.at_commit = at_commit
        self.offsets_at_commit = at_commit  # log_store.offsets_at_commit
        self.sent: list[Commit] = []
        """Commits not settled yet, in the order they were made."""
        self._batches: dict[Commit, dict[str, tuple[_Log, list[Record]]]] = {}
        self._order: dict[str, deque[tuple[Commit, list[Record]]]] = {}  # by topic, in flight
        self._answered: set[Commit] = set()

    def commit(self) -> Commit:
        touched, self._touched = self._touched, {}
        batch: dict[str, tuple[_Log, list[Record]]] = {}
        for topic, log in touched.items():
            if log.pending:
                batch[topic] = (log, log.pending)
                log.pending = []
        done = Commit(self._ticket, list(batch) if batch else None)
        self._ticket = Ticket()
        if not batch:
            done.ticket.resolve()
            return done
        self.sent.append(done)
        self._batches[done] = batch
        for topic, (_, records) in batch.items():
            self._order.setdefault(topic, deque()).append((done, records))
        return done

    def settle(self, done: Commit, fail: frozenset[str] = frozenset()) -> None:
        """Say what ``done`` stored: all but the topics in ``fail`` (a failed topic has no
        later commit in flight and nothing appended; its offsets are given again)."""
        self.sent.remove(done)
        self._answered.add(done)
        for topic, (log, records) in self._batches.pop(done).items():
            if self.at_commit:
                assert self._order[topic][0][0] is done, "a topic's commits settle in order"
                if topic in fail:
                    self._order[topic].popleft()
                    done.ticket.failed(topic, StorageError(FAILED))
                    done.failed[topic] = records
                else:
                    for record in records:  # the store's own records, not seen by anyone yet
                        log.last += 1
                        record.offset = log.last
                        if record.meta is not None:
                            log.meta_last_offset = log.last
                    done.written[topic] = records
            elif topic in fail:
                assert self._order[topic][-1][0] is done and not log.pending
                self._order[topic].pop()
                log.last = records[0].offset - 1
                done.ticket.failed(topic, StorageError(FAILED))
                done.failed[topic] = records
            else:
                done.written[topic] = records
            self._show(topic, log)
        done.settle()
        done.ticket.resolve()

    def settle_all(self) -> None:
        while self.sent:
            self.settle(self.sent[0])

    def _show(self, topic: str, log: _Log) -> None:
        """The topic's view takes what settled, up to its first commit still in flight."""
        order = self._order.get(topic)
        while order and order[0][0] in self._answered:
            _, records = order.popleft()
            log.committed += records
            log.bytes += sum(len(r.msg) for r in records)
        if not order:
            self._order.pop(topic, None)
