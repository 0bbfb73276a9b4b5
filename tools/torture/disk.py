"""Disk damage for ``linemq torture --corrupt``: flipped bytes and lost tails, with a ledger.

Crash-only torture appends what a torn write leaves; this mode damages what was
already stored, as a bad sector or a power loss does: random bytes flipped in
sealed segments and in journals, random tails cut off the live segment and the
journals. Each step reads the original bytes first, so the run knows exactly
which records it destroyed (by offset and text) and which files it touched,
and can hold the broker to "damage costs only what it hits, and is reported".

A record cut off the live segment that the broker's write-ahead log (``.wal/``)
still holds whole is not lost: the next start puts it back, at its offset, so it
does not count as destroyed.

A cycle damages either the topic's segments or the group's journal, never both:
a lost segment tail is only safe to renumber past while the group journal still
holds the cursor (the trace that keeps offsets from being reused), and that is
the promise being checked.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from linemq.tools.torture.model import GROUP, TOPIC

SEGMENT_GLOB = "[0-9]" * 20 + ".log"
MAX_FLIPS = 3
MAX_CUT = 8192


@dataclass(slots=True)
class Destroyed:
    """A record the run damaged: its offset and text as they were stored."""

    offset: int
    text: str
    cut: bool = False  # lost with a cut tail (power loss) rather than a flipped byte


@dataclass(slots=True)
class DiskDamage:
    """What one damage step did, for the checks after the next start."""

    kind: str  # "segment" or "journal"
    records: list[Destroyed] = field(default_factory=list)
    flipped: dict[Path, list[int]] = field(default_factory=dict)  # file -> positions flipped
    headers: list[Path] = field(default_factory=list)  # sealed segments whose header was hit
    cut: dict[Path, int] = field(default_factory=dict)  # file -> bytes cut off its tail

    def describe(self) -> str:
        parts = [f"{self.kind}:"]
        flips = sum(len(p) for p in self.flipped.values())
        if flips:
            parts.append(f"{flips} bytes flipped")
        if self.cut:
            parts.append(f"{sum(self.cut.values())} tail bytes cut")
        if self.records:
            parts.append(f"{len(self.records)} records hit")
        return " ".join(parts)


def damage_disk(data_dir: Path, rng: random.Random, kind: str) -> DiskDamage:
    """Damage the topic's segments (``kind == "segment"``) or the group's journal."""
    if kind == "segment":
        return _damage_segments(data_dir, rng)
    return _damage_journal(data_dir, rng)


def _damage_segments(data_dir: Path, rng: random.Random) -> DiskDamage:
    done = DiskDamage("segment")
    topic_dir = data_dir / "topics" / TOPIC
    segments = sorted(topic_dir.glob(SEGMENT_GLOB)) if topic_dir.is_dir() else []
    if not segments:
        return done
    *sealed, live = segments
    for _ in range(rng.randint(1, MAX_FLIPS) if sealed else 0):
        path = rng.choice(sealed)
        data = bytearray(path.read_bytes())
        if not data:
            continue
        pos = rng.randrange(len(data))
        start, end = _line_around(data, pos)
        if start == 0:
            done.headers.append(path)
        else:
            done.records += _records_in(bytes(data[start:end]), cut=False)
        data[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        done.flipped.setdefault(path, []).append(pos)
    tail = live.read_bytes()
    first_nl = tail.find(b"\n") + 1  # never cut into the header: that is a torn create
    room = len(tail) - first_nl
    if first_nl and room > 0:
        cut = rng.randint(1, min(room, MAX_CUT))
        keep = len(tail) - cut
        start, _ = _line_around(tail, keep)
        logged = _logged_records(data_dir)
        cut_off = _records_in(tail[start:], cut=True)
        done.records += [r for r in cut_off if (r.offset, r.text) not in logged]
        with open(live, "r+b") as f:
            f.truncate(keep)
        done.cut[live] = cut
    return done


def _damage_journal(data_dir: Path, rng: random.Random) -> DiskDamage:
    done = DiskDamage("journal")
    journals = [p for p in data_dir.rglob(f"{GROUP}.journal") if p.parent.name == TOPIC]
    for path in journals:
        data = bytearray(path.read_bytes())
        if not data:
            continue
        if rng.random() < 0.5:
            pos = rng.randrange(len(data))
            data[pos] ^= 1 << rng.randrange(8)
            done.flipped[path] = [pos]
        else:
            cut = rng.randint(1, min(len(data), MAX_CUT // 8))
            del data[len(data) - cut :]
            done.cut[path] = cut
        path.write_bytes(bytes(data))
    return done


def _line_around(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    """The line holding byte ``pos``: [start, end) with its newline (a flipped newline joins
    two lines, and both are hit: the span runs to the end of the next one)."""
    start = data.rfind(b"\n", 0, pos) + 1
    end = data.find(b"\n", pos + 1 if data[pos : pos + 1] == b"\n" else pos)
    return start, len(data) if end < 0 else end + 1


def _logged_records(data_dir: Path) -> set[tuple[int, str]]:
    """(offset, text) of the topic's records in the write-ahead log: a frame line names
    the topic of the record lines after it."""
    held: set[tuple[int, str]] = set()
    wal = data_dir / ".wal"
    for path in sorted(wal.glob("*.wal")) if wal.is_dir() else []:
        topic = None
        for line in path.read_bytes().split(b"\n"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            if "topic" in obj:
                topic = obj["topic"]
            elif topic == TOPIC and isinstance(obj.get("offset"), int):
                held.add((obj["offset"], str(obj.get("msg", ""))))
    return held


def _records_in(chunk: bytes, *, cut: bool) -> list[Destroyed]:
    out = []
    for line in chunk.split(b"\n"):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("offset"), int):
            out.append(Destroyed(obj["offset"], str(obj.get("msg", "")), cut))
    return out


def reported_offsets(events: list[dict[str, object]]) -> set[int]:
    """Offsets the broker said it lost (damaged records, unreadable segments, lost tails)."""
    out: set[int] = set()
    for e in events:
        if e.get("event") != "storage_damage":
            continue
        first, last = e.get("first"), e.get("last")
        if isinstance(first, int):
            out.update(range(first, (last if isinstance(last, int) else first) + 1))
    return out


def unreported(damage: DiskDamage, events: list[dict[str, object]]) -> list[str]:
    """Damage the broker's log does not account for: each flipped file needs a report on it,
    and each record a flip hit needs its offset reported. A tail cut at a line boundary
    leaves nothing to see, so records lost with a cut tail need no report of their own."""
    touched: set[str] = set()
    for e in events:
        name = e.get("event")
        if name in ("storage_damage", "segment_truncated", "journal_truncated"):
            touched.add(Path(str(e.get("path") or e.get("segment") or "")).name)
    lost = reported_offsets(events)
    missing = []
    for path in damage.flipped:
        if path.name not in touched:
            missing.append(f"bytes flipped in {path.name} but no damage reported for it")
    for path in damage.headers:
        if path.name not in touched:
            missing.append(f"header of {path.name} damaged but not reported")
    for rec in damage.records:
        if not rec.cut and rec.offset not in lost:
            missing.append(f"offset {rec.offset} damaged but not reported as lost")
    return missing
