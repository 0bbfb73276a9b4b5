"""What the broker found damaged on disk: reported once, counted, and kept for probes.

Storage and journal readers run in worker threads as well as on the loop, and
the same damaged record can be read many times (every HISTORY that passes it),
so a report is keyed by where the damage is and counted the first time only.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Final

import structlog

log = structlog.get_logger(__name__)

MAX_KEPT: Final = 256  # the newest reports kept for STATS and /readyz; counters keep counting

# Kinds of damage, as STATS and /metrics label them.
RECORD: Final = "record"  # a log record that failed its check: skipped, its offset lost
SEGMENT: Final = "segment"  # a segment whose header is unreadable: its records are lost
LOST_OFFSETS: Final = "lost_offsets"  # a log that lost its tail: offsets a..b never served
JOURNAL_LINE: Final = "journal_line"  # a journal or state line that failed its check
UNOPENABLE: Final = "unopenable"  # a topic or group that could not be opened at all
INDEX: Final = "index"  # a segment index entry that is wrong: costs scans, never records


@dataclass(frozen=True, slots=True)
class Damage:
    """One damaged place. ``first``/``last`` are offsets when the damage costs offsets."""

    kind: str
    path: str
    position: int = -1
    topic: str | None = None
    group: str | None = None
    first: int | None = None
    last: int | None = None
    reason: str = ""

    def describe(self) -> dict[str, object]:
        """The fields that are set, for a log line or a JSON report."""
        out: dict[str, object] = {"kind": self.kind, "path": self.path}
        if self.position >= 0:
            out["position"] = self.position
        for key in ("topic", "group", "first", "last"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.reason:
            out["reason"] = self.reason
        return out


class DamageReport:
    """Every distinct damage seen since start: logged once, counted by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str, int]] = set()
        self._counts: Counter[str] = Counter()
        self._kept: list[Damage] = []

    def report(self, damage: Damage) -> bool:
        """Log and count ``damage`` unless it was reported before; True if it is new."""
        key = (damage.kind, damage.path, damage.position)
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            self._counts[damage.kind] += 1
            self._kept.append(damage)
            if len(self._kept) > MAX_KEPT:
                del self._kept[: len(self._kept) - MAX_KEPT]
        log.error("storage_damage", **damage.describe())
        return True

    def counts(self) -> dict[str, int]:
        """Damage seen so far by kind; every kind present, zero when none."""
        with self._lock:
            return {
                kind: self._counts[kind]
                for kind in (RECORD, SEGMENT, LOST_OFFSETS, JOURNAL_LINE, UNOPENABLE)
            }

    def recent(self) -> list[Damage]:
        with self._lock:
            return list(self._kept)

    def unopenable(self) -> list[Damage]:
        """Topics and groups the broker could not open: what /readyz reports as degraded."""
        with self._lock:
            return [d for d in self._kept if d.kind == UNOPENABLE]
