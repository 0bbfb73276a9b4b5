"""Segment files: a versioned header line, then exactly one JSON record per line.

The format stays plain (``tail``/``jq`` work on it) and carries its version in the
first line, so a later format is read or refused explicitly, as beanstalkd does
with ``Walver``. Readers ignore unknown keys so later versions can add fields.

Version 2 (written since the storage-integrity release) ends every line, the
header included, with a checksum field (see ``checksum``)::

    {"linemq_segment":2,"base_offset":1,"c":3316475230}
    {"id":"msg_..","offset":1,"ts":1796656084.82,"msg":"hello","c":2616134172}

A line whose check fails is not a record: readers skip it and report it. Version 1
lines (the first release) carry no check; they are still read, never written.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final

import orjson

from linemq.broker.storage.checksum import CHECK_FIELD, check, seal, seal_run
from linemq.broker.storage.records import Meta, Record, StorageError

SEGMENT_VERSION: Final = 2
READABLE_VERSIONS: Final = (1, 2)
LOG_SUFFIX: Final = ".log"
IDX_SUFFIX: Final = ".idx"
NAME_DIGITS: Final = 20
READ_CHUNK: Final = 64 * 1024
MAX_HEADER: Final = 4096
GUESS_LINES: Final = 64  # lines looked at to tell a headless segment's version


class SegmentFormatError(StorageError):
    """A segment file this broker cannot read; refused rather than guessed at."""


class HeaderDamaged(SegmentFormatError):
    """A header line that is not one this broker ever wrote: damage, not a later format."""


def segment_stem(base: int) -> str:
    return f"{base:0{NAME_DIGITS}d}"


def log_path(topic_dir: pathlib.Path, base: int) -> pathlib.Path:
    return topic_dir / (segment_stem(base) + LOG_SUFFIX)


def idx_path(topic_dir: pathlib.Path, base: int) -> pathlib.Path:
    return topic_dir / (segment_stem(base) + IDX_SUFFIX)


def parse_segment_name(name: str) -> int | None:
    """The base offset a segment file name announces, or None for foreign files."""
    stem, dot, suffix = name.partition(".")
    if "." + suffix != LOG_SUFFIX or not dot:
        return None
    if len(stem) != NAME_DIGITS or not stem.isascii() or not stem.isdigit():
        return None
    return int(stem)


def list_segments(topic_dir: pathlib.Path) -> list[int]:
    """Base offsets of a topic's segments, from file names alone (no file is read)."""
    bases = (parse_segment_name(p.name) for p in topic_dir.iterdir())
    return sorted(b for b in bases if b is not None)


def encode_header(base: int) -> bytes:
    return seal(orjson.dumps({"linemq_segment": SEGMENT_VERSION, "base_offset": base}))


def decode_header(line: bytes, path: pathlib.Path, base: int) -> int:
    """The format version of a header line for ``base``; raise if it is not one.

    ``HeaderDamaged`` for a line this broker never wrote (a failed check, no
    header at all, the wrong base); plain ``SegmentFormatError`` for a later version.
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict) or "linemq_segment" not in obj:
        raise HeaderDamaged(f"{path}: missing linemq segment header")
    version = obj["linemq_segment"]
    if type(version) is int and version > SEGMENT_VERSION and "c" in obj and check(line):
        raise SegmentFormatError(
            f"{path}: unsupported segment format version {version!r} "
            f"(this broker reads versions {READABLE_VERSIONS})"
        )
    checked = "c" in obj
    if version not in READABLE_VERSIONS or checked != (version >= 2):
        raise HeaderDamaged(f"{path}: damaged segment header")
    if checked and not check(line):
        raise HeaderDamaged(f"{path}: damaged segment header")
    if obj.get("base_offset") != base:
        raise HeaderDamaged(
            f"{path}: header base_offset {obj.get('base_offset')!r} does not match file name"
        )
    return int(version)


def encode_record(offset: int, id: str, ts: float, msg: str, meta: Meta | None = None) -> bytes:
    """One log line. Raises ValueError for values that would not read back identically."""
    if not math.isfinite(ts):
        raise ValueError(f"timestamp must be finite, got {ts!r}")
    obj: dict[str, object] = {"id": id, "offset": offset, "ts": ts, "msg": msg}
    if meta is not None:
        obj.update(meta.encode())
    try:
        return seal(orjson.dumps(obj))
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot encode message: {exc}") from exc


def encode_run(
    first: int, ids: Sequence[str], ts: float, msgs: Sequence[str], meta: Meta | None = None
) -> list[bytes]:
    """The lines of records ``first, first+1, ...`` published together: same time, same meta."""
    offsets = range(first, first + len(msgs))
    if meta is not None or not math.isfinite(ts):
        runs = zip(offsets, ids, msgs, strict=True)
        return [encode_record(o, i, ts, m, meta) for o, i, m in runs]
    dumps = orjson.dumps
    try:
        objs = [
            dumps({"id": i, "offset": o, "ts": ts, "msg": m})
            for o, i, m in zip(offsets, ids, msgs, strict=True)
        ]
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot encode message: {exc}") from exc
    return seal_run(objs)  # one call for the run: it is the pipelined hot path


def decode_record(line: bytes, version: int = SEGMENT_VERSION) -> Record | None:
    """The record a line holds, or None if it is not one (torn, zeroed, failed its check).

    ``version`` is the segment's: from 2 on a line must pass its check.
    """
    if version >= 2 and not check(line):
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record_of(obj)


def record_of(obj: object) -> Record | None:
    """The record a decoded line holds, or None; the check field is not part of it."""
    if type(obj) is not dict:
        return None
    obj.pop("c", None)
    offset, id_, ts, msg = obj.get("offset"), obj.get("id"), obj.get("ts"), obj.get("msg")
    if type(offset) is not int or offset < 1 or type(id_) is not str or type(msg) is not str:
        return None
    if type(ts) is not float:
        if type(ts) is not int:
            return None
        ts = float(ts)
    return Record(offset, id_, ts, msg, Meta.decode(obj) if len(obj) > 4 else None)


@dataclass(frozen=True, slots=True)
class Head:
    """What a segment's first line says: where records start, their format, and damage."""

    end: int
    version: int
    damage: str = ""  # why the header could not be trusted; "" when it is sound


def read_head(f: BinaryIO, path: pathlib.Path, base: int) -> Head:
    """Read a segment's header; a damaged one costs at most the header line.

    The base offset is in the file name, so a damaged header is survivable: records
    start after the first newline, and their version is guessed from the first
    line that passes a version-2 check (none: version 1, or nothing readable).
    A header of a later format still raises ``SegmentFormatError``.
    """
    f.seek(0)
    head = f.read(MAX_HEADER)
    nl = head.find(b"\n")
    if nl >= 0:
        try:
            return Head(nl + 1, decode_header(head[: nl + 1], path, base))
        except HeaderDamaged as exc:
            why = str(exc)
        first = head[: nl + 1]
        if check(first) and decode_record(first) is not None:
            return Head(0, 2, why)  # no header at all: the first line is a record
    else:
        why = f"{path}: missing linemq segment header"
    pos = nl + 1 if nl >= 0 else _next_line(f, len(head))
    return Head(pos, _guess_version(f, pos), why)


def _guess_version(f: BinaryIO, pos: int) -> int:
    """Version 1 only if records are there and none of the first lines carries a check."""
    v1 = False
    for n, (_pos, line) in enumerate(iter_lines(f, pos, None)):
        if CHECK_FIELD in line:
            return 2
        v1 = v1 or decode_record(line, 1) is not None
        if n >= GUESS_LINES:
            break
    return 1 if v1 else SEGMENT_VERSION


def _next_line(f: BinaryIO, pos: int) -> int:
    """Where the line after the one running through ``pos`` starts (the file end if none)."""
    f.seek(pos)
    while True:
        data = f.read(READ_CHUNK)
        if not data:
            return pos
        nl = data.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(data)


def iter_lines(f: BinaryIO, pos: int, end: int | None) -> Iterator[tuple[int, bytes]]:
    """Complete lines in [pos, end) with their start positions; a trailing fragment is skipped.

    ``end`` bounds reads of the active segment to what was written when the read
    began, so a concurrent write can never be seen half-done.
    """
    f.seek(pos)
    buf = bytearray()
    buf_pos = pos
    read_pos = pos
    while end is None or read_pos < end:
        want = READ_CHUNK if end is None else min(READ_CHUNK, end - read_pos)
        data = f.read(want)
        if not data:
            return
        read_pos += len(data)
        buf += data
        start = 0
        while (nl := buf.find(b"\n", start)) >= 0:
            yield buf_pos + start, bytes(buf[start : nl + 1])
            start = nl + 1
        del buf[:start]
        buf_pos += start
