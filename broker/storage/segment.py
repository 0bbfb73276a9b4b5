"""Segment files: a versioned header line, then exactly one JSON record per line.

The format stays plain (``tail``/``jq`` work on it) and carries its version in the
first line, so a later format is read or refused explicitly, as beanstalkd does
with ``Walver``. Readers ignore unknown keys so later versions can add fields.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Iterator, Sequence
from typing import BinaryIO, Final

import orjson

from broker.storage.records import Meta, Record, StorageError

SEGMENT_VERSION: Final = 1
LOG_SUFFIX: Final = ".log"
IDX_SUFFIX: Final = ".idx"
NAME_DIGITS: Final = 20
READ_CHUNK: Final = 64 * 1024
MAX_HEADER: Final = 4096


class SegmentFormatError(StorageError):
    """A segment file this broker cannot read; refused rather than guessed at."""


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
    return orjson.dumps({"linemq_segment": SEGMENT_VERSION, "base_offset": base}) + b"\n"


def decode_header(line: bytes, path: pathlib.Path, base: int) -> None:
    """Raise unless ``line`` is a version-1 header for ``base``."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict) or "linemq_segment" not in obj:
        raise SegmentFormatError(f"{path}: missing linemq segment header")
    version = obj["linemq_segment"]
    if version != SEGMENT_VERSION:
        raise SegmentFormatError(
            f"{path}: unsupported segment format version {version!r} "
            f"(this broker reads version {SEGMENT_VERSION})"
        )
    if obj.get("base_offset") != base:
        raise SegmentFormatError(
            f"{path}: header base_offset {obj.get('base_offset')!r} does not match file name"
        )


def encode_record(offset: int, id: str, ts: float, msg: str, meta: Meta | None = None) -> bytes:
    """One log line. Raises ValueError for values that would not read back identically."""
    if not math.isfinite(ts):
        raise ValueError(f"timestamp must be finite, got {ts!r}")
    obj: dict[str, object] = {"id": id, "offset": offset, "ts": ts, "msg": msg}
    if meta is not None:
        obj.update(meta.encode())
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
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
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    try:
        return [
            dumps({"id": i, "offset": o, "ts": ts, "msg": m}, option=newline)
            for o, i, m in zip(offsets, ids, msgs, strict=True)
        ]
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot encode message: {exc}") from exc


def decode_record(line: bytes) -> Record | None:
    """The record a line holds, or None if it is not one (torn, zeroed, foreign)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return _record(obj)


def _record(obj: object) -> Record | None:
    if type(obj) is not dict:
        return None
    offset, id_, ts, msg = obj.get("offset"), obj.get("id"), obj.get("ts"), obj.get("msg")
    if type(offset) is not int or offset < 1 or type(id_) is not str or type(msg) is not str:
        return None
    if type(ts) is not float:
        if type(ts) is not int:
            return None
        ts = float(ts)
    return Record(offset, id_, ts, msg, Meta.decode(obj) if len(obj) > 4 else None)


def read_header_end(f: BinaryIO, path: pathlib.Path, base: int) -> int:
    """Validate a sealed segment's header; return where its first record starts."""
    f.seek(0)
    head = f.read(MAX_HEADER)
    nl = head.find(b"\n")
    if nl < 0:
        raise SegmentFormatError(f"{path}: missing linemq segment header")
    decode_header(head[: nl + 1], path, base)
    return nl + 1


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


def read_segment(
    path: pathlib.Path,
    header_end: int,
    end: int | None,
    seek: tuple[int, int] | None,
    start_offset: int,
    max_count: int,
    max_bytes: int,
    out: list[Record],
    out_bytes: int,
) -> tuple[bool, int]:
    """Append records >= start_offset to ``out``; return (limits reached, msg bytes so far).

    ``seek`` is an (offset, position) index hint. It is trusted only if the line
    found there really is that record; otherwise the segment is scanned from its
    header, which costs time but never correctness.
    """
    with path.open("rb") as f:
        for chunk in _chunks_from(f, header_end, end, seek):
            for rec in decode_lines(chunk, start_offset, max_count - len(out)):
                if rec.offset < start_offset:
                    continue
                if out and out_bytes + len(rec.msg) > max_bytes:
                    return True, out_bytes
                out.append(rec)
                out_bytes += len(rec.msg)
                if len(out) >= max_count:
                    return True, out_bytes
    return len(out) >= max_count, out_bytes


def decode_lines(chunk: bytes, start_offset: int = 1, count: int = -1) -> list[Record]:
    """The records of complete lines, skipping any that are not records.

    Readers catching up on a backlog decode thousands of lines per read, so the
    lines are decoded as one JSON array (records never contain a raw newline),
    and only the ``count`` lines from ``start_offset`` on, found by counting
    from the first (a segment's offsets have no gaps). Any surprise (a damaged
    line, a gap) falls back to decoding every line on its own.
    """
    lines = chunk.split(b"\n")
    lines.pop()  # after the last newline
    expect = 0
    if count >= 0:
        first = decode_record(lines[0])
        if first is not None:
            skip = max(0, start_offset - first.offset)
            last = decode_record(lines[-1]) if skip >= len(lines) else None
            if last is not None and last.offset < start_offset:
                return []  # all before start_offset
            del lines[:skip]
            del lines[count:]
            expect = first.offset + skip
    try:
        recs = [_from_obj(obj) for obj in orjson.loads(b"[" + b",".join(lines) + b"]")]
        if count < 0 or (recs and recs[0].offset == expect):
            return recs
    except (orjson.JSONDecodeError, _NotARecord):
        pass
    return [rec for line in chunk.splitlines() if (rec := decode_record(line)) is not None]


class _NotARecord(Exception):
    pass


def _from_obj(obj: object) -> Record:
    rec = _record(obj)
    if rec is None:
        raise _NotARecord
    return rec


def _chunks_from(
    f: BinaryIO, header_end: int, end: int | None, seek: tuple[int, int] | None
) -> Iterator[bytes]:
    """Runs of complete lines from the index hint, or from the header if the hint is wrong."""
    if seek is not None and seek[1] >= header_end:
        chunks = iter_chunks(f, seek[1], end)
        first = next(chunks, None)
        if first is not None:
            rec = decode_record(first[: first.find(b"\n") + 1])
            if rec is not None and rec.offset == seek[0]:
                yield first
                yield from chunks
                return
    yield from iter_chunks(f, header_end, end)


def iter_chunks(f: BinaryIO, pos: int, end: int | None) -> Iterator[bytes]:
    """Like ``iter_lines``, a read at a time: each chunk is complete lines only."""
    f.seek(pos)
    tail = b""
    read_pos = pos
    while end is None or read_pos < end:
        want = READ_CHUNK if end is None else min(READ_CHUNK, end - read_pos)
        data = f.read(want)
        if not data:
            return
        read_pos += len(data)
        data = tail + data if tail else data
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if cut:
            yield data[:cut]
