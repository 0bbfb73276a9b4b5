"""Offline checks of topic logs, for ``linemq verify``: every segment, index and record.

``verify_topics`` only reads. ``repair_topics`` opens each topic the way the broker
does at start-up (the same recovery code, so it does exactly what a start would:
cut a torn tail, rewrite a torn header, rebuild the index, start a format-2
segment after a format-1 one), replays the write-ahead log a crash left into the
segments, and says what changed on disk.
"""

from __future__ import annotations

import pathlib
import sys

from linemq.broker.storage.damage import INDEX, RECORD, SEGMENT, UNOPENABLE, Damage, DamageReport
from linemq.broker.storage.index import INDEX_ENTRY, SegmentIndex
from linemq.broker.storage.log_state import check_topic_name
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.segment import (
    SegmentFormatError,
    decode_record,
    idx_path,
    list_segments,
    log_path,
    read_head,
)
from linemq.broker.storage.segment_scan import LineScan, read_segment
from linemq.broker.storage.store import FileStore
from linemq.broker.storage.time_index import line_at
from linemq.broker.storage.topic_log import TopicLog
from linemq.broker.storage.wal import WAL_DIR, list_wal
from linemq.broker.storage.wal_replay import read_frames


def _topic_dirs(data_dir: pathlib.Path) -> list[tuple[str, pathlib.Path]]:
    topics = data_dir / "topics"
    if not topics.is_dir():
        return []
    out = []
    for entry in sorted(topics.iterdir()):
        try:
            out.append((check_topic_name(entry.name), entry))
        except ValueError:
            continue
    return [(name, path) for name, path in out if path.is_dir()]


def verify_topics(data_dir: pathlib.Path) -> list[Damage]:
    """Every damaged record, header, index and torn tail under ``data_dir/topics``; reads only.

    Offsets of damaged records are found as the broker finds them (from their
    neighbours). A torn tail of a topic's newest segment is listed as a RECORD
    with reason "torn tail": the broker cuts it at start-up.
    """
    found: list[Damage] = []
    for topic, topic_dir in _topic_dirs(data_dir):
        bases = list_segments(topic_dir)
        for i, base in enumerate(bases):
            found += _verify_segment(topic, topic_dir, base, newest=i == len(bases) - 1)
    return found + _verify_wal(data_dir)


def _verify_wal(data_dir: pathlib.Path) -> list[Damage]:
    """Lines of the write-ahead log a crash left that fail their check (see wal_replay)."""
    report = DamageReport()
    for _seq, path in list_wal(data_dir / WAL_DIR):
        for _frame in read_frames(path, report, cut_tail=False):
            pass
    return report.recent()


def _verify_segment(topic: str, topic_dir: pathlib.Path, base: int, newest: bool) -> list[Damage]:
    path = log_path(topic_dir, base)
    where = str(path)
    found: list[Damage] = []

    def report(pos: int, first: int | None, last: int | None, why: str) -> None:
        found.append(Damage(RECORD, where, pos, topic, None, first, last, why))

    try:
        with path.open("rb") as f:
            head = read_head(f, path, base)
            size = f.seek(0, 2)
    except SegmentFormatError as exc:
        return [Damage(UNOPENABLE, where, 0, topic, reason=str(exc))]
    except OSError as exc:
        return [Damage(UNOPENABLE, where, 0, topic, reason=str(exc))]
    if head.damage:
        found.append(Damage(SEGMENT, where, 0, topic, reason=head.damage))
    whole = path.read_bytes()
    end = max(whole.rfind(b"\n") + 1, head.end)  # a partial last line is reported below
    scan = LineScan(base, head.version, None, report)
    read_segment(path, scan, head.end, end, None, 1, sys.maxsize, sys.maxsize, [], 0)
    if end < size:
        report(end, None, None, "torn tail" if newest else "incomplete last line")
    found += _verify_index(topic, topic_dir, base, head.end, end, head.version)
    return found


def _verify_index(
    topic: str, topic_dir: pathlib.Path, base: int, header_end: int, end: int, version: int
) -> list[Damage]:
    ipath = idx_path(topic_dir, base)
    try:
        raw = ipath.read_bytes()
    except FileNotFoundError:
        return []
    index = SegmentIndex.parse_prefix(raw, base, header_end, end)
    found: list[Damage] = []
    good = len(index) * INDEX_ENTRY.size
    if good != len(raw):
        why = "index entries that do not increase or point past the log (rebuilt at start-up)"
        found.append(Damage(INDEX, str(ipath), good, topic, reason=why))
    with log_path(topic_dir, base).open("rb") as f:
        for i, (offset, pos) in enumerate(zip(index.offsets, index.positions, strict=True)):
            line = line_at(f, pos, end)
            rec = decode_record(line, version) if line is not None else None
            if rec is None or rec.offset != offset:
                why = f"index entry for offset {offset} does not point at its record"
                found.append(Damage(INDEX, str(ipath), i * INDEX_ENTRY.size, topic, reason=why))
    return found


def repair_topics(data_dir: pathlib.Path) -> list[str]:
    """Do what the broker's start-up recovery does to every topic; one line per change made."""
    done: list[str] = []
    for topic, topic_dir in _topic_dirs(data_dir):
        before = _files(topic_dir)
        try:
            TopicLog.open(topic_dir.parent, topic, damage=DamageReport()).close()
        except (OSError, StorageError, ValueError) as exc:
            done.append(f"{topic}: left as it is, it cannot be opened ({exc})")
            continue
        done += _changes(topic_dir, before, _files(topic_dir))
    return done + _replay_wal(data_dir)


def _replay_wal(data_dir: pathlib.Path) -> list[str]:
    """What a start does with the write-ahead log a crash left: its records into the
    segments, then the log removed."""
    files = list_wal(data_dir / WAL_DIR)
    if not files:
        return []
    before = {name: _files(topic_dir) for name, topic_dir in _topic_dirs(data_dir)}
    try:
        store = FileStore(data_dir, damage=DamageReport(), wal=False)
        store.open()
        store.close()
    except (OSError, StorageError, ValueError) as exc:
        return [f"{data_dir / WAL_DIR}: left as it is, it cannot be replayed ({exc})"]
    done = []
    for name, topic_dir in _topic_dirs(data_dir):
        done += _changes(topic_dir, before.get(name, {}), _files(topic_dir))
    gone = [path for _seq, path in files if not path.exists()]
    return done + [f"{path}: replayed into the segments, removed" for path in gone]


def _files(topic_dir: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(topic_dir.iterdir()) if p.is_file()}


def _changes(
    topic_dir: pathlib.Path, before: dict[str, bytes], after: dict[str, bytes]
) -> list[str]:
    out = []
    for name in sorted(before.keys() | after.keys()):
        path = topic_dir / name
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None:
            out.append(f"{path}: created ({len(new or b'')} bytes)")
        elif new is None:
            out.append(f"{path}: removed")
        elif new == old[: len(new)]:
            out.append(
                f"{path}: cut {len(old) - len(new)} bytes at {len(new)} (torn or damaged tail)"
            )
        else:
            out.append(f"{path}: rewritten ({len(old)} -> {len(new)} bytes)")
    return out
