"""Bounding open files: the open-files limit, and a budget of idle file handles.

A broker keeps a file open per topic (and per group journal), so thousands of
topics would exhaust the usual limit of 1024 and block new connections. At start
the soft limit is raised to the hard one; then whoever keeps handles open
(topic logs here, journals too) registers with a ``HandleBudget`` and closes its
handles when asked, to reopen them on its next write.

Recency is a flag the owner sets on each use (the clock algorithm), so a write
to a topic whose handles are open costs one attribute store, not a list update.
"""

from __future__ import annotations

import resource
from collections import OrderedDict
from typing import Final, Protocol

import structlog

log = structlog.get_logger(__name__)

RESERVED_FDS: Final = 64  # sockets, reads, listening sockets, the HTTP server...
MAX_NOFILE: Final = 1 << 20  # what "unlimited" is raised to (Linux refuses more by default)


class HandleOwner(Protocol):
    """Something that keeps files open between uses and can close them until the next."""

    handle_recent: bool  # set by the owner on every use; cleared by the budget's sweep

    def release_handles(self) -> None:
        """Close the handles now; the next use reopens them."""
        ...


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (old soft, new soft)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_NOFILE if hard == resource.RLIM_INFINITY else hard
    if want > soft or soft == resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            log.warning("open_files_limit_not_raised", soft=soft, hard=hard, error=str(exc))
            return soft, soft
        log.info("open_files_limit_raised", soft=soft, new_soft=want, hard=hard)
        return soft, want
    return soft, soft


def open_files_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return MAX_NOFILE if soft == resource.RLIM_INFINITY else soft


def budget_for(share: float, per_owner: int, limit: int | None = None) -> int:
    """How many owners of ``per_owner`` files fit in ``share`` of the limit, past the reserve.

    Topic logs take half (two files each); the journal helper's group journals
    can take their own share with the same rule.
    """
    limit = open_files_limit() if limit is None else limit
    return max(4, int((limit - RESERVED_FDS) * share) // per_owner)


class HandleBudget:
    """At most ``capacity`` owners keep handles open; the least recently used close first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._open: OrderedDict[int, HandleOwner] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def opened(self, owner: HandleOwner) -> None:
        """``owner`` has just opened its handles; others may be asked to close theirs."""
        owner.handle_recent = True
        self._open[id(owner)] = owner
        while len(self._open) > self.capacity:
            self._evict_one(owner)

    def closed(self, owner: HandleOwner) -> None:
        """``owner`` closed its handles on its own (it was closed for good)."""
        self._open.pop(id(owner), None)

    def _evict_one(self, keep: HandleOwner) -> None:
        """Sweep from the oldest: a recent owner gets a second chance, the first idle one goes."""
        for _ in range(2 * len(self._open) + 1):
            key, owner = next(iter(self._open.items()))
            if owner is keep or owner.handle_recent:
                owner.handle_recent = owner is keep
                self._open.move_to_end(key)
                continue
            del self._open[key]
            owner.release_handles()
            return
