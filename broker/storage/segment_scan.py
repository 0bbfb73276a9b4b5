"""Reading a segment's records in bulk, checking every line and reporting what fails.

A line that fails its check (or does not decode, or breaks the offset order) is
never served and never hides the lines after it: it is skipped, and its offset
is found from its neighbours (offsets within a segment are contiguous), so the
report says which message was lost.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import BinaryIO, Final

import orjson

from linemq.broker.storage.checksum import check
from linemq.broker.storage.records import Record
from linemq.broker.storage.segment import READ_CHUNK, SEGMENT_VERSION, decode_record, record_of

# report(byte position, first lost offset, last lost offset, reason); offsets None if unknown
Report = Callable[[int, int | None, int | None, str], None]

NOT_A_RECORD: Final = "failed its check"
OUT_OF_ORDER: Final = "offset out of order"


class LineScan:
    """One pass over one segment's lines: which are records, and which offsets were lost.

    A record counts only if its offset is above the last one accepted and at most
    ``limit`` (the segment's last offset, when known): a line that lies about its
    offset cannot make later records look out of order.
    """

    __slots__ = ("_bad", "_report", "base", "limit", "prev", "version")

    def __init__(
        self,
        base: int,
        version: int = SEGMENT_VERSION,
        limit: int | None = None,
        report: Report | None = None,
    ) -> None:
        self.base = base
        self.version = version
        self.limit = limit
        self.prev = base - 1  # the last offset accepted
        self._report = report
        self._bad: list[tuple[int, str]] = []  # lines since ``prev`` that were not records

    def restart_at(self, offset: int) -> None:
        """The scan continues at a record known to be ``offset`` (an index entry)."""
        self.prev = offset - 1
        self._bad.clear()

    def accept(self, rec: Record | None, pos: int) -> bool:
        """Whether the line at ``pos`` is served; reports lines that are not."""
        if rec is None:
            self._bad.append((pos, NOT_A_RECORD))
            return False
        offset = rec.offset
        if offset <= self.prev or (self.limit is not None and offset > self.limit):
            self._bad.append((pos, OUT_OF_ORDER))
            return False
        if self._bad or offset > self.prev + 1:
            self._lost(offset - 1, pos)
        self.prev = offset
        return True

    def finish(self, end_pos: int) -> None:
        """The segment ended: lines pending since the last record lost offsets up to ``limit``."""
        if self._bad or (self.limit is not None and self.limit > self.prev):
            self._lost(self.limit, end_pos)

    def _lost(self, last: int | None, pos: int) -> None:
        """Lines in ``_bad`` (or, with none, the bytes before ``pos``) lost prev+1 .. last."""
        first = self.prev + 1
        bad, self._bad = self._bad, []
        report = self._report
        if report is None:
            return
        if last is not None and last < first:
            for p, why in bad:  # lines that cost no offset: stray or duplicated
                report(p, None, None, why)
            return
        if last is not None and len(bad) == last - first + 1:
            for i, (p, why) in enumerate(bad):
                report(p, first + i, first + i, why)
            return
        where, why = bad[0] if bad else (pos, "records missing")
        report(where, first, last, why)
        for p, why in bad[1:]:
            report(p, first, last, why)

    def lines(self, chunk: bytes, pos: int) -> list[Record]:
        """Every line of ``chunk`` (at file position ``pos``) on its own: the careful path."""
        out: list[Record] = []
        version = self.version
        for line in chunk.split(b"\n")[:-1]:
            rec = decode_record(line, version)
            if self.accept(rec, pos):
                assert rec is not None
                out.append(rec)
            pos += len(line) + 1
        return out


def read_segment(
    path: pathlib.Path,
    scan: LineScan,
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
    pos = header_end
    with path.open("rb") as f:
        for pos, chunk in chunks_from(f, scan, header_end, end, seek):
            for rec in decode_lines(chunk, start_offset, max_count - len(out), scan, pos):
                if rec.offset < start_offset:
                    continue
                if out and out_bytes + len(rec.msg) > max_bytes:
                    return True, out_bytes
                out.append(rec)
                out_bytes += len(rec.msg)
                if len(out) >= max_count:
                    return True, out_bytes
            pos += len(chunk)
        if end is None and f.seek(0, 2) > pos:  # a sealed segment ends in a partial line
            scan.accept(None, pos)
    scan.finish(pos)
    return len(out) >= max_count, out_bytes


def decode_lines(
    chunk: bytes,
    start_offset: int = 1,
    count: int = -1,
    scan: LineScan | None = None,
    pos: int = 0,
) -> list[Record]:
    """The records of complete lines, skipping (and reporting) any that are not records.

    Readers catching up on a backlog decode thousands of lines per read, so the
    lines are checked, then decoded as one JSON array (records never contain a
    raw newline), and only the ``count`` lines from ``start_offset`` on, found by
    counting from the first (a segment's offsets have no gaps). Any surprise (a
    damaged line, a gap) falls back to ``LineScan.lines``, one line at a time.
    Without ``scan`` the lines are taken as version 1 (unchecked).
    """
    lines = chunk.split(b"\n")
    lines.pop()  # after the last newline
    if not lines:
        return []
    if scan is None:  # a chunk on its own: its first record sets where offsets start
        first_rec = decode_record(lines[0], 1)
        scan = LineScan(first_rec.offset if first_rec is not None else 1, 1)
    version = scan.version
    expect = scan.prev + 1
    if count >= 0 and not scan._bad:
        first = decode_record(lines[0], version)
        if first is not None and first.offset == expect:
            skip = max(0, start_offset - first.offset)
            if skip >= len(lines):
                last = decode_record(lines[-1], version)
                if last is not None and last.offset == expect + len(lines) - 1:
                    scan.prev = last.offset
                    return []  # all before start_offset
                lines = []  # a gap: the careful path
            del lines[:skip]
            del lines[count:]
            expect += skip
        else:
            lines = []  # damaged or unexpected: the careful path
    if lines and (version < 2 or all(map(check, lines))):
        try:
            recs = [_from_obj(obj) for obj in orjson.loads(b"[" + b",".join(lines) + b"]")]
        except (orjson.JSONDecodeError, _NotARecord):
            recs = []
        last_ok = scan.limit is None or recs[-1].offset <= scan.limit if recs else False
        if last_ok and [r.offset for r in recs] == list(range(expect, expect + len(recs))):
            scan.prev = recs[-1].offset
            return recs
    return scan.lines(chunk, pos)


class _NotARecord(Exception):
    pass


def _from_obj(obj: object) -> Record:
    rec = record_of(obj)
    if rec is None:
        raise _NotARecord
    return rec


def chunks_from(
    f: BinaryIO, scan: LineScan, header_end: int, end: int | None, seek: tuple[int, int] | None
) -> Iterator[tuple[int, bytes]]:
    """Runs of complete lines from the index hint, or from the header if the hint is wrong."""
    if seek is not None and seek[1] >= header_end:
        chunks = iter_chunks(f, seek[1], end)
        first = next(chunks, None)
        if first is not None:
            rec = decode_record(first[1][: first[1].find(b"\n") + 1], scan.version)
            if rec is not None and rec.offset == seek[0]:
                scan.restart_at(seek[0])
                yield first
                yield from chunks
                return
    yield from iter_chunks(f, header_end, end)


def iter_chunks(f: BinaryIO, pos: int, end: int | None) -> Iterator[tuple[int, bytes]]:
    """Like ``iter_lines``, a read at a time: (position, complete lines only)."""
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
        if cut:
            yield read_pos - len(data), data[:cut]
        tail = data[cut:]
