"""Recovering a topic's last segment after a crash, without reading the whole log.

Only the last segment can hold a torn write: its tail is read backwards until
the last complete record that passes its check, anything after it is cut off
(and logged), and its index is caught up by replaying the records after the last
good entry through the same ``index_due`` rule that appends use. Damaged records
before that last one stay where they are: readers skip and report them. A
damaged header costs only the header line (the base offset is in the file name).
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass
from typing import BinaryIO, Final

import structlog

from linemq.broker.storage.checksum import CHECK_FIELD
from linemq.broker.storage.fsio import write_all
from linemq.broker.storage.index import INDEX_ENTRY, SegmentIndex, encode_entries, index_due
from linemq.broker.storage.segment import (
    MAX_HEADER,
    HeaderDamaged,
    decode_header,
    decode_record,
    encode_header,
    idx_path,
    iter_lines,
    log_path,
    read_head,
)

log = structlog.get_logger(__name__)

TAIL_CHUNK: Final = 64 * 1024


@dataclass(slots=True)
class RecoveredSegment:
    """The last segment as it stands after repair: everything below ``size`` is whole."""

    base: int
    header_end: int
    size: int
    last_offset: int
    index: SegmentIndex
    idx_size: int
    version: int
    header_damage: str = ""  # why the header was not trusted; "" when it was sound
    cut_records: int = 0  # whole record lines cut with the tail: they failed their check


def recover_last_segment(topic_dir: pathlib.Path, topic: str, base: int) -> RecoveredSegment:
    path = log_path(topic_dir, base)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        header_end, version, damage = _check_header(fd, path, base)
        if header_end < 0:
            header = encode_header(base)
            _repair(fd, 0, size, topic, path, damage or "torn segment header")
            write_all(fd, header)
            os.fsync(fd)
            size = header_end = len(header)
            damage = "" if damage == "torn" else damage
        end, last = _find_valid_end(fd, header_end, size, base, version)
        cut_records = 0
        if end < size:
            cut_records = _record_lines(os.pread(fd, size - end, end), version)
            _repair(fd, end, size, topic, path, "torn or invalid tail")
            os.fsync(fd)
        index = _recover_index(fd, topic_dir, topic, base, header_end, end, version)
    finally:
        os.close(fd)
    return RecoveredSegment(
        base, header_end, end, last, index, len(index) * INDEX_ENTRY.size, version, damage,
        cut_records,
    )  # fmt: skip


def _record_lines(tail: bytes, version: int) -> int:
    """Complete lines in a cut tail that have a record's shape but failed their check.

    A torn write leaves a partial last line, and a stray writer or a zeroed block
    leaves junk: neither is a record that was written whole. A line shaped like a
    record of this segment's format (a check field, or an offset, and a closing
    brace) was, so its offset was handed out: the caller reports it and never
    hands that offset out again.
    """
    mark = CHECK_FIELD if version >= 2 else b'"offset":'
    return sum(1 for line in tail.split(b"\n")[:-1] if line.endswith(b"}") and mark in line)


def _repair(fd: int, keep: int, size: int, topic: str, path: pathlib.Path, why: str) -> None:
    log.warning(
        "segment_truncated",
        topic=topic,
        segment=path.name,
        reason=why,
        bytes_dropped=size - keep,
        new_size=keep,
    )
    os.ftruncate(fd, keep)
    os.lseek(fd, keep, os.SEEK_SET)


def _check_header(fd: int, path: pathlib.Path, base: int) -> tuple[int, int, str]:
    """(where records start, their format version, why the header is not trusted).

    Where records start is -1 if the header line has no end: torn while being
    created (a prefix of the header we would have written, or zeros: "torn"), or
    damaged; either way no record follows it, so it is written again. A damaged
    complete header line costs only itself. A later format raises.
    """
    head = os.pread(fd, MAX_HEADER, 0)
    nl = head.find(b"\n")
    if nl >= 0:
        try:
            return nl + 1, decode_header(head[: nl + 1], path, base), ""
        except HeaderDamaged:
            with os.fdopen(os.dup(fd), "rb") as f:
                found = read_head(f, path, base)
            return found.end, found.version, found.damage
    if encode_header(base).startswith(head) or head.count(0) == len(head):
        return -1, 2, "torn"
    with os.fdopen(os.dup(fd), "rb") as f:
        found = read_head(f, path, base)
    if found.end >= os.fstat(fd).st_size:  # not one complete line: nothing to keep
        return -1, 2, found.damage
    return found.end, found.version, found.damage


def _find_valid_end(
    fd: int, header_end: int, size: int, base: int, version: int
) -> tuple[int, int]:
    """The end of the last record that passes its check, and its offset (``base - 1``: none).

    A record only counts if its offset is above the record before it that also
    passes (or it is the segment's only one): a stray line at the tail would
    otherwise repeat an offset. Damaged lines between them stay: readers skip them.
    """
    end = size
    while True:
        start, stop, offset = _last_record(fd, header_end, end, base, version)
        if stop == header_end:
            return header_end, base - 1
        _, _, previous = _last_record(fd, header_end, start, base, version)
        if offset > previous:
            return stop, offset
        end = start


def _last_record(
    fd: int, header_end: int, size: int, base: int, version: int
) -> tuple[int, int, int]:
    """Scan backwards for the last complete, decodable record: (its start, end, offset).

    The buffer grows backwards only while no valid record is found, so a healthy
    segment costs one small read; a fully damaged one is bounded by segment size.
    With none found: (header_end, header_end, base - 1).
    """
    buf = b""
    buf_start = size
    search_to = 0  # rfind limit inside buf
    line_end: int | None = None  # exclusive end (in buf) of the candidate line
    while True:
        nl = buf.rfind(b"\n", 0, search_to)
        if nl < 0 and buf_start > header_end:
            grow = min(max(TAIL_CHUNK, len(buf)), buf_start - header_end)
            buf_start -= grow
            buf = os.pread(fd, grow, buf_start) + buf
            search_to += grow
            if line_end is not None:
                line_end += grow
            continue
        if line_end is not None:
            rec = decode_record(buf[nl + 1 : line_end], version)
            if rec is not None and rec.offset >= base:
                return buf_start + nl + 1, buf_start + line_end, rec.offset
        if nl < 0:
            return header_end, header_end, base - 1
        line_end = nl + 1
        search_to = nl


def _recover_index(
    fd: int, topic_dir: pathlib.Path, topic: str, base: int, header_end: int, end: int, version: int
) -> SegmentIndex:
    """Keep the valid prefix of the index file, then replay the records after it."""
    ipath = idx_path(topic_dir, base)
    try:
        raw = ipath.read_bytes()
    except FileNotFoundError:
        raw = b""
    index = SegmentIndex.parse_prefix(raw, base, header_end, end)
    added = _catch_up(fd, index, header_end, end, version)
    keep = (len(index) - len(added)) * INDEX_ENTRY.size
    if keep != len(raw) or added:
        if keep != len(raw):
            log.warning(
                "segment_index_repaired",
                topic=topic,
                segment=ipath.name,
                bytes_dropped=len(raw) - keep,
                entries_rebuilt=len(added),
            )
        ifd = os.open(ipath, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(ifd, keep)
            os.lseek(ifd, keep, os.SEEK_SET)
            write_all(ifd, encode_entries(added))
            os.fsync(ifd)
        finally:
            os.close(ifd)
    return index


def _catch_up(
    fd: int, index: SegmentIndex, header_end: int, end: int, version: int
) -> list[tuple[int, int]]:
    """Index the records after the last trusted entry; normally only a few KiB to scan."""
    start = index.last_position
    with os.fdopen(os.dup(fd), "rb") as f:
        if start is not None:
            first = next(iter_lines(f, start, end), None)
            rec = decode_record(first[1], version) if first is not None else None
            if rec is None or rec.offset != index.offsets[-1]:
                index.truncate(0)  # the entries do not match the log: rebuild from scratch
                start = None
        return _replay(f, index, header_end if start is None else start, start, end, version)


def _replay(
    f: BinaryIO, index: SegmentIndex, pos: int, skip: int | None, end: int, version: int
) -> list[tuple[int, int]]:
    added: list[tuple[int, int]] = []
    last = index.offsets[-1] if len(index) else 0
    for line_pos, line in iter_lines(f, pos, end):
        if line_pos == skip:
            continue
        rec = decode_record(line, version)
        if rec is not None and rec.offset > last and index_due(line_pos, index.last_position):
            last = rec.offset
            index.add(rec.offset, line_pos)
            added.append((rec.offset, line_pos))
    return added
