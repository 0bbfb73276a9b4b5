"""Per-connection delivery state: its fanout topics, group memberships and what it holds."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Final

from linemq.broker.delivery.context import Sender
from linemq.broker.delivery.holdings import Holdings

FORGOTTEN_IDS: Final = 256


class _Gone:
    """The sender of a client whose connection is closed: what is still sent goes nowhere.

    A closed connection swaps its ``ClientState`` onto this, which breaks the
    connection <-> client cycle: both are freed at once, not at the next full
    pass of the cyclic garbage collector (rare by design, see ``linemq serve``).
    """

    def send(self, data: bytes) -> None:
        pass

    def kill(self, reason: str, *, notice: bool = False) -> None:
        pass

    async def writable(self) -> None:
        pass


GONE: Final = _Gone()


class Member:
    """A client's place in the group ``key`` (topic, name): the messages it holds, as rows
    of its holdings (holdings.py), and how many."""

    __slots__ = ("client", "holding", "holdings", "key")

    def __init__(self, client: ClientState, key: tuple[str, str]) -> None:
        self.client = client
        self.key = key
        self.holding = 0
        self.holdings = Holdings()


class ClientState:
    """One connection as delivery sees it; the server keeps one per connection."""

    __slots__ = (
        "forgotten",
        "members",
        "patterns",
        "reads",
        "sender",
        "topics",
        "version",
    )

    @property
    def subscribes(self) -> bool:
        """Subscribed to anything: a topic, a group or a pattern."""
        return bool(self.topics or self.members or self.patterns)

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.version = 1  # the protocol version the client asked for with HELLO
        self.topics: set[str] = set()
        self.members: dict[tuple[str, str], Member] = {}
        self.patterns: set[tuple[str, str]] = set()  # (pattern, group) memberships
        # Which topics a wildcard may bring it (a user's read permission); None: all.
        self.reads: Callable[[str], bool] | None = None
        # Why recent ids were taken back, so a late ACK hears why it is refused.
        self.forgotten: dict[str, str] = {}

    def find_row(self, id: str) -> tuple[Member, int] | None:
        """The member holding ``id`` (a row of its holdings), and the row. A message two of
        its groups delivered is found in the group it joined first."""
        key = id.encode()
        for member in self.members.values():
            row = member.holdings.find(key)
            if row >= 0:
                return member, row
        return None

    def ack_row(self, id: str) -> tuple[Member, int] | None:
        """An ack of a row of some member's holdings: that member and the row's offset."""
        key = id.encode()
        for member in self.members.values():
            offset = member.holdings.ack(key)
            if offset >= 0:
                member.holding -= 1
                self.forget(id, "already acknowledged")
                return member, offset
        return None

    def ack_rows(self, ids: list[str]) -> tuple[Member, list[int]] | None:
        """Acks of the next rows of one member's holdings, in order (``Holdings.ack_next``):
        that member and the offsets."""
        for member in self.members.values():
            offsets = member.holdings.ack_next(ids)
            if offsets is not None:
                member.holding -= len(ids)
                self.forgotten.update(dict.fromkeys(ids, "already acknowledged"))
                if len(self.forgotten) >= 2 * FORGOTTEN_IDS:
                    self._trim()
                return member, offsets
        return None

    def forget(self, id: str, why: str) -> None:
        """Every ack lands here (or in ``ack_rows``), so the oldest reasons are dropped
        in bulk (the newest FORGOTTEN_IDS to twice that are kept), not one per ack."""
        forgotten = self.forgotten
        forgotten[id] = why
        if len(forgotten) >= 2 * FORGOTTEN_IDS:
            self._trim()

    def _trim(self) -> None:
        forgotten = self.forgotten
        start = len(forgotten) - FORGOTTEN_IDS
        self.forgotten = dict(itertools.islice(forgotten.items(), start, None))
