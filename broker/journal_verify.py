"""Offline check and repair of a stopped broker's journals (``linemq verify [--repair]``).

``verify_journals`` reads every group, pattern and replay journal and every dedup
marker under a data dir, checks every line, and changes nothing.
``repair_journals`` does what the broker's start-up does (the same code: a
group is loaded by ``GroupState.load`` and written back as a snapshot) and
says what it did. Topic logs are checked elsewhere. It reads the files of
``FileStateStore`` (storage/file_state.py), so it sits with the CLI, above delivery,
whose entry checks and replay it uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from linemq.broker.delivery.dead_letters import is_replay_entry
from linemq.broker.delivery.group_events import is_event
from linemq.broker.delivery.lifecycle import GroupState
from linemq.broker.delivery.patterns import is_pattern_entry
from linemq.broker.protocol.names import is_valid_name
from linemq.broker.storage.damage import JOURNAL_LINE, UNOPENABLE, Damage, DamageReport
from linemq.broker.storage.file_state import (
    DEDUP_DIR,
    GROUPS_DIR,
    OLD_PATTERNS_FILE,
    PATTERNS_FILE,
    StateFile,
    migrate_patterns,
    state_files,
)
from linemq.broker.storage.journal import Journal, scan_journal

Valid = Callable[[dict[str, object]], bool]


def verify_journals(data_dir: Path) -> list[Damage]:
    """Every damaged journal line, torn tail and unreadable journal or marker, in path order."""
    found: list[Damage] = []
    for path, topic, group, valid in _journals(data_dir):
        try:
            data = path.read_bytes()
        except OSError as exc:
            found.append(_unopenable(path, topic, group, exc))
            continue
        scan = scan_journal(data, valid)
        for position, reason in scan.damaged:
            found.append(Damage(JOURNAL_LINE, str(path), position, topic, group, reason=reason))
        if scan.end < len(data):
            torn = f"torn last line ({len(data) - scan.end} bytes)"
            found.append(Damage(JOURNAL_LINE, str(path), scan.end, topic, group, reason=torn))
    for marker in _entries(data_dir / DEDUP_DIR):
        if not is_valid_name(marker.name) or not marker.is_file():
            reason = "not a dedup marker (a file named for a topic)"
            found.append(Damage(UNOPENABLE, str(marker), reason=reason))
    return found


def repair_journals(data_dir: Path) -> list[str]:
    """Recover every journal as the broker would at start, and say what changed."""
    done: list[str] = []
    groups_dir = data_dir / GROUPS_DIR
    if (groups_dir / OLD_PATTERNS_FILE).is_file() and not (groups_dir / PATTERNS_FILE).exists():
        migrate_patterns(groups_dir)
        done.append(f"{groups_dir / OLD_PATTERNS_FILE}: moved to {PATTERNS_FILE}")
    for path, topic, group, valid in _journals(data_dir):
        for tmp in (path.with_name(f".{path.name}.tmp"), path.with_name(f"{path.name}.tmp")):
            if tmp.exists():
                done.append(f"{tmp}: removed (a snapshot a crash left unfinished)")
        try:
            done += _repair(path, topic, group, valid, _first_offset(data_dir, topic))
        except OSError as exc:
            done.append(f"{path}: cannot be repaired ({exc}); the broker reports it as unopenable")
    return done


def _repair(
    path: Path, topic: str | None, group: str | None, valid: Valid, fallback: int
) -> list[str]:
    data = path.read_bytes()
    scan = scan_journal(data, valid)
    torn = len(data) - scan.end
    journal = Journal(path, damage=DamageReport())  # reported here, not logged as live damage
    what: list[str] = []
    if group is not None:
        state = GroupState(journal)
        state.load(fallback)
        if scan.damaged:
            what.append(
                f"{len(scan.damaged)} damaged line(s) dropped; the group goes on from offset"
                f" {state.cursor} with {len(state.pending)} pending (delivered again)"
            )
    else:
        entries = journal.replay(valid)
        if journal.needs_rewrite:
            journal.rewrite_now(entries)
        if scan.damaged:
            what.append(f"{len(scan.damaged)} damaged line(s) dropped")
    journal.close()
    if torn:
        what.append(f"torn last line cut ({torn} bytes)")
    if scan.version != 2 and scan.entries:
        what.append("rewritten in format 2")
    return [f"{path}: {'; '.join(what)}"] if what else []


_CHECKS: dict[str, Valid] = {
    "patterns": is_pattern_entry,
    "group": is_event,
    "replay": is_replay_entry,
}


def _journals(data_dir: Path) -> list[tuple[Path, str | None, str | None, Valid]]:
    """(path, topic, group, entry check) of every journal but the schedules', in a
    stable order."""
    files: list[StateFile] = [f for f in state_files(data_dir) if f.kind in _CHECKS]
    return [(f.path, f.topic, f.group, _CHECKS[f.kind]) for f in files]


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.is_dir() else []


def _first_offset(data_dir: Path, topic: str | None) -> int:
    """A floor never above the topic's first offset: its oldest segment's name, else 1."""
    if topic is None:
        return 1
    bases = [
        int(p.name.split(".")[0])
        for p in _entries(data_dir / "topics" / topic)
        if p.name.endswith(".log") and p.name.split(".")[0].isdigit()
    ]
    return min(bases, default=1)


def _unopenable(path: Path, topic: str | None, group: str | None, exc: OSError) -> Damage:
    reason = f"{type(exc).__name__}: {os.strerror(exc.errno) if exc.errno else exc}"
    return Damage(UNOPENABLE, str(path), topic=topic, group=group, reason=reason)
