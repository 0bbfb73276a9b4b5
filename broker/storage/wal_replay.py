"""Reading the write-ahead log back at start-up: its frames, and what is damaged in it.

Each file is read whole (a checkpoint keeps the log to a few tens of MiB). A
frame's lines are checked one by one: a line that fails costs its own record
(reported with its offset, known from its place in the frame), never its
neighbours. A frame header that fails its check leaves the lines after it
without a topic: they are reported, up to the next header that passes. A torn
tail (a frame shorter than its header says, a header line with no end) is cut
off the file and reported like a torn segment tail; the complete lines in a
torn frame are still served.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import orjson
import structlog

from linemq.broker.storage.checksum import check
from linemq.broker.storage.damage import RECORD, SEGMENT, Damage, DamageReport
from linemq.broker.storage.records import Record, StorageError
from linemq.broker.storage.segment import decode_record
from linemq.broker.storage.wal import FRAME_START, WAL_VERSION

log = structlog.get_logger(__name__)

LINE_FAILED: Final = "failed its check in the write-ahead log"


@dataclass(slots=True)
class Frame:
    """One topic's records of one commit, as far as they could be read."""

    topic: str
    first: int
    n: int
    records: list[tuple[bytes, Record]]  # (segment line, its record), in offset order
    whole: bool  # False for a torn frame: records past the tear were never written whole

    @property
    def last(self) -> int:
        return self.first + self.n - 1

    @property
    def last_seen(self) -> int:
        """The last offset the frame shows was given out (a torn one: its last record's)."""
        if self.whole:
            return self.last
        return self.records[-1][1].offset if self.records else 0


@dataclass(frozen=True, slots=True)
class _Header:
    topic: str
    first: int
    n: int
    nbytes: int


def _frame_header(line: bytes) -> _Header | None:
    if not line.startswith(FRAME_START) or not check(line):
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    topic, first, n, nbytes = obj.get("topic"), obj.get("first"), obj.get("n"), obj.get("len")
    if type(topic) is not str or not all(type(v) is int and v >= 0 for v in (first, n, nbytes)):
        return None
    if first < 1 or n < 1:
        return None
    return _Header(topic, first, n, nbytes)


def _check_file_header(line: bytes, path: pathlib.Path, damage: DamageReport) -> None:
    """Refuse a later format (its records would be misread); report a damaged header."""
    obj = None
    if check(line):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
    if isinstance(obj, dict) and obj.get("linemq_wal") == WAL_VERSION:
        return
    if isinstance(obj, dict) and type(obj.get("linemq_wal")) is int:
        raise StorageError(
            f"{path}: write-ahead log format {obj['linemq_wal']} is not one this broker "
            f"reads (version {WAL_VERSION}); start a broker that wrote it"
        )
    damage.report(Damage(SEGMENT, str(path), 0, reason="damaged write-ahead log header"))


def read_frames(path: pathlib.Path, damage: DamageReport, cut_tail: bool) -> Iterator[Frame]:
    """The frames of one file, in order; with ``cut_tail``, a torn tail is cut off the file."""
    data = path.read_bytes()
    nl = data.find(b"\n")
    if nl < 0:
        _cut(path, 0, len(data), cut_tail, "torn write-ahead log header")
        return
    _check_file_header(data[: nl + 1], path, damage)
    pos = nl + 1
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            _cut(path, pos, len(data), cut_tail, "torn frame header")
            return
        header = _frame_header(data[pos : nl + 1])
        if header is None:
            pos = _skip_damaged(data, pos, path, damage)
            continue
        body_start = nl + 1
        body_end = body_start + header.nbytes
        whole = body_end <= len(data)
        body = data[body_start:body_end]
        yield Frame(
            header.topic,
            header.first,
            header.n,
            _records(body, body_start, header, whole, path, damage),
            whole,
        )
        if not whole:
            _cut(path, pos, len(data), cut_tail, "torn frame")
            return
        pos = body_end


def _records(
    body: bytes,
    body_pos: int,
    header: _Header,
    whole: bool,
    path: pathlib.Path,
    damage: DamageReport,
) -> list[tuple[bytes, Record]]:
    """The frame's lines that pass their check and are where the header says they are."""
    lines = body.split(b"\n")
    tail = lines.pop()  # b"" for a body that ends its last line
    placed = len(lines) == header.n or not whole  # a torn frame's lines are still in place
    out: list[tuple[bytes, Record]] = []
    pos = body_pos
    for i, raw in enumerate(lines):
        line = raw + b"\n"
        rec = decode_record(line)
        offset = header.first + i
        fits = rec is not None and header.first <= rec.offset <= header.first + header.n - 1
        if rec is not None and fits and (not placed or rec.offset == offset):
            out.append((line, rec))
        else:
            known = offset if placed else None
            damage.report(
                Damage(RECORD, str(path), pos, header.topic, None, known, known, LINE_FAILED)
            )
        pos += len(line)
    if tail and whole:  # damage took the body's last newline
        damage.report(Damage(RECORD, str(path), pos, header.topic, reason=LINE_FAILED))
    return out


def _skip_damaged(data: bytes, pos: int, path: pathlib.Path, damage: DamageReport) -> int:
    """Report the lines from ``pos`` up to the next sound frame header; return where it is."""
    start = pos
    pos = data.index(b"\n", pos) + 1  # the line that failed
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            pos = len(data)  # a fragment with no frame in it
            break
        if _frame_header(data[pos : nl + 1]) is not None:
            break
        pos = nl + 1
    why = f"frame header failed its check: {pos - start} bytes of records of an unknown topic"
    damage.report(Damage(RECORD, str(path), start, reason=why))
    return pos


def _cut(path: pathlib.Path, keep: int, size: int, cut_tail: bool, why: str) -> None:
    log.warning(
        "wal_truncated", file=path.name, reason=why, bytes_dropped=size - keep, new_size=keep
    )
    if not cut_tail:
        return
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, keep)
        os.fsync(fd)
    finally:
        os.close(fd)
