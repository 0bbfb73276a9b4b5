"""Wildcard subscriptions: which patterns match a topic, and durable pattern groups.

A group joined with a pattern (``SUB orders.* billing``) is an ordinary group on
every matching topic. The registration is durable, so a matching topic that
appears while no member is connected still gets its group from its first
message.
"""

from __future__ import annotations

from typing import Any, cast

from broker.protocol import is_pattern, topic_matches
from broker.storage.journal import Journal


class PatternRegistry:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.groups: set[tuple[str, str]] = set()
        self.members: dict[tuple[str, str], dict[Any, None]] = {}
        self._fanout_cache: dict[str, list[str]] = {}

    def open(self) -> None:
        """A damaged line loses one registration (reported); the journal is then rewritten."""
        if self.journal.path.exists():
            entries = self.journal.replay(is_pattern_entry)
            for entry in entries:
                self.groups.add((cast(str, entry["p"]), cast(str, entry["g"])))
            if self.journal.needs_rewrite:
                self.journal.rewrite_now(entries)

    def register(self, pattern: str, group: str) -> None:
        if (pattern, group) not in self.groups:
            self.groups.add((pattern, group))
            self.journal.append({"p": pattern, "g": group})

    def matching(self, topic: str) -> list[tuple[str, str]]:
        return sorted((p, g) for p, g in self.groups if topic_matches(p, topic))

    def fanout_changed(self) -> None:
        """A pattern gained or lost fanout subscribers: every topic's answer may change."""
        self._fanout_cache.clear()

    def fanout_patterns(self, topic: str, fanout: dict[str, Any]) -> list[str]:
        """Patterns with fanout subscribers that match ``topic`` (cached per topic, since
        every publish asks and subscriptions change rarely)."""
        found = self._fanout_cache.get(topic)
        if found is None:
            found = [p for p in fanout if is_pattern(p) and topic_matches(p, topic)]
            self._fanout_cache[topic] = found
        return found


def is_pattern_entry(entry: dict[str, object]) -> bool:
    return isinstance(entry.get("p"), str) and isinstance(entry.get("g"), str)
