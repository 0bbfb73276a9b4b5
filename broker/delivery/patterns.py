"""Wildcard subscriptions: which patterns match a topic, and durable pattern groups.

A group joined with a pattern (``SUB orders.* billing``) is an ordinary group on
every matching topic. The registration is durable, so a matching topic that
appears while no member is connected still gets its group from its first
message.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from linemq.broker.protocol.names import topic_matches
from linemq.broker.storage.state_store import EventLog


class PatternRegistry:
    def __init__(self, journal: EventLog) -> None:
        self.journal = journal
        self.groups: set[tuple[str, str]] = set()
        self.members: dict[tuple[str, str], dict[Any, None]] = {}
        self.fanout = FanoutPatterns()
        self._saving = asyncio.Lock()  # one rewrite of the journal at a time

    def open(self) -> None:
        """A damaged line loses one registration (reported); the journal is then rewritten."""
        if self.journal.exists():
            entries = self.journal.replay(is_pattern_entry)
            for entry in entries:
                self.groups.add((cast(str, entry["p"]), cast(str, entry["g"])))
            if self.journal.needs_rewrite:
                self.journal.rewrite_now(entries)

    def register(self, pattern: str, group: str) -> None:
        if (pattern, group) not in self.groups:
            self.groups.add((pattern, group))
            self.journal.append({"p": pattern, "g": group})

    def unregister(self, pattern: str, group: str) -> list[Any]:
        """Forget a pattern group; returns the clients that were its members."""
        self.groups.discard((pattern, group))
        return list(self.members.pop((pattern, group), {}))

    async def save(self) -> None:
        """Rewrite the journal as the registrations now (after ``unregister``), durably."""
        async with self._saving:
            entries: list[dict[str, object]] = [{"p": p, "g": g} for p, g in sorted(self.groups)]
            await self.journal.rewrite_off_loop(entries)
            await asyncio.to_thread(self.journal.sync)

    def matching(self, topic: str) -> list[tuple[str, str]]:
        return sorted((p, g) for p, g in self.groups if topic_matches(p, topic))


class _Node:
    """A token of cached topic names; ``topic`` is set where a cached name ends."""

    __slots__ = ("children", "topic")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.topic: str | None = None


class FanoutPatterns:
    """Patterns that have fanout subscribers and, per topic published to, those matching it.

    Every publish asks, so the answer is cached per topic. A pattern gaining its
    first subscriber or losing its last changes only the cached answers of the
    topics it matches, found through a trie of the cached names: churning
    wildcard subscriptions costs what the pattern matches, where clearing the
    cache made every publisher to every topic rebuild its answer.
    """

    def __init__(self) -> None:
        self._active: dict[str, None] = {}
        self._cache: dict[str, list[str]] = {}
        self._root = _Node()

    def matching(self, topic: str) -> list[str]:
        found = self._cache.get(topic)
        if found is None:
            found = [p for p in self._active if topic_matches(p, topic)]
            self._cache[topic] = found
            node = self._root
            for token in topic.split("."):
                node = node.children.setdefault(token, _Node())
            node.topic = topic
        return found

    def added(self, pattern: str) -> None:
        """``pattern`` got its first fanout subscriber."""
        if pattern not in self._active:
            self._active[pattern] = None
            cache = self._cache
            for topic in self._cached_matches(pattern):
                cache[topic] = [*cache[topic], pattern]  # a new list: a publish may hold the old

    def removed(self, pattern: str) -> None:
        """``pattern`` lost its last fanout subscriber."""
        if self._active.pop(pattern, False) is None:
            cache = self._cache
            for topic in self._cached_matches(pattern):
                cache[topic] = [p for p in cache[topic] if p != pattern]

    def _cached_matches(self, pattern: str) -> list[str]:
        """Cached topics ``pattern`` matches (``topic_matches``), by walking the trie."""
        tokens = pattern.split(".")
        nodes = [self._root]
        last = len(tokens) - 1
        for i, token in enumerate(tokens):
            if token == ">" and i == last:
                return _names_below([c for n in nodes for c in n.children.values()])
            if token == "*":
                nodes = [c for n in nodes for c in n.children.values()]
            else:
                nodes = [c for n in nodes if (c := n.children.get(token)) is not None]
            if not nodes:
                return []
        return [n.topic for n in nodes if n.topic is not None]


def _names_below(nodes: list[_Node]) -> list[str]:
    """Every cached name at or under ``nodes``."""
    names: list[str] = []
    stack = nodes[:]
    while stack:
        node = stack.pop()
        if node.topic is not None:
            names.append(node.topic)
        stack.extend(node.children.values())
    return names


def is_pattern_entry(entry: dict[str, object]) -> bool:
    return isinstance(entry.get("p"), str) and isinstance(entry.get("g"), str)
