"""Job progress (``TOUCH <id> progress=50 resizing``): what a consumer last said about a delivery.

Kept in memory beside the groups, never journaled: progress belongs to one
delivery attempt, and after a restart every in-flight message is waiting again,
so what its consumer said about it no longer holds. ``STATUS`` shows it.

Entries are dropped lazily: once a group's table has grown to twice what it held
after the last sweep, messages no longer pending in the group are swept out, so
the table stays within a small multiple of what is in flight.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from linemq.broker.delivery.group import ConsumerGroup

SWEEP_MIN: Final = 64


@dataclass(frozen=True, slots=True)
class Progress:
    attempt: int
    """The delivery attempt it was reported for: a later attempt starts without one."""
    percent: float | None
    note: str | None
    ts: float


class ProgressBoard:
    """Per group, offset -> the last ``Progress`` its holder reported."""

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[ConsumerGroup, dict[int, Progress]] = (
            weakref.WeakKeyDictionary()
        )
        self._swept: weakref.WeakKeyDictionary[ConsumerGroup, int] = weakref.WeakKeyDictionary()

    def report(self, group: ConsumerGroup, offset: int, progress: Progress) -> None:
        table = self._tables.get(group)
        if table is None:
            table = self._tables[group] = {}
        table[offset] = progress
        if len(table) >= max(SWEEP_MIN, 2 * self._swept.get(group, 0)):
            pending = group.state.pending
            for gone in [o for o in table if o not in pending]:
                del table[gone]
            self._swept[group] = len(table)

    def get(self, group: ConsumerGroup, offset: int, attempt: int) -> Progress | None:
        """What was reported for ``offset`` during delivery ``attempt``, if anything."""
        table = self._tables.get(group)
        found = table.get(offset) if table is not None else None
        return found if found is not None and found.attempt == attempt else None
