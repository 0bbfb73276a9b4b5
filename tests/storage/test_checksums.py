"""Segment format 2: a checksum per line, checked by every read path; version 1 still read."""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import tarfile

import orjson
import pytest
from storage_helpers import OpenLog, fill, segment_files

from linemq.broker.storage.checksum import check, seal
from linemq.broker.storage.damage import RECORD, SEGMENT
from linemq.broker.storage.records import Meta
from linemq.broker.storage.retention import newest_record
from linemq.broker.storage.topic_log import TopicLog

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _lines(path: pathlib.Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _rewrite(path: pathlib.Path, n: int, line: bytes) -> int:
    """Replace line ``n`` (0 = header); return its byte position."""
    lines = _lines(path)
    pos = sum(map(len, lines[:n]))
    lines[n] = line
    path.write_bytes(b"".join(lines))
    return pos


def test_new_segments_are_version_2_json_lines_with_a_check(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log = open_log()
    fill(log, 30)
    log.close()
    for seg in segment_files(tmp_path / "topics" / "t"):
        lines = _lines(seg)
        header = orjson.loads(lines[0])
        assert header["linemq_segment"] == 2 and check(lines[0])
        for line in lines[1:]:
            obj = orjson.loads(line)  # still one JSON object a line: jq reads it
            assert set(obj) == {"id", "offset", "ts", "msg", "c"} and check(line)


def test_a_changed_byte_in_a_message_is_never_served_and_is_reported(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log = open_log(segment_bytes=100_000)
    fill(log, 20)
    log.close()
    seg = segment_files(tmp_path / "topics" / "t")[0]
    line = _lines(seg)[7]
    assert b'"msg":"m7"' in line
    pos = _rewrite(seg, 7, line.replace(b'"msg":"m7"', b'"msg":"m8"'))
    log = open_log(segment_bytes=100_000)
    got = log.read(1, 100)
    assert [r.offset for r in got] == [o for o in range(1, 21) if o != 7]
    assert all(r.msg == f"m{r.offset}" for r in got)
    assert [r.offset for r in log.read(7, 3)] == [8, 9, 10]
    damage = log.damage.recent()
    assert [(d.kind, d.first, d.last, d.position) for d in damage] == [(RECORD, 7, 7, pos)]
    assert damage[0].topic == "t" and damage[0].path == str(seg)


@pytest.mark.parametrize("where", [3, 19], ids=["middle", "second-to-last"])
def test_unparseable_record_is_skipped_reported_and_recovery_keeps_the_rest(
    open_log: OpenLog, tmp_path: pathlib.Path, where: int
) -> None:
    log = open_log(segment_bytes=100_000)
    fill(log, 20)
    log.close()
    seg = segment_files(tmp_path / "topics" / "t")[0]
    _rewrite(seg, where, b'{"id":"msg_x",\x00\x00 not json\n')
    log = open_log(segment_bytes=100_000)
    assert log.last_offset == 20  # the intact last record stays
    assert [r.offset for r in log.read(1, 100)] == [o for o in range(1, 21) if o != where]
    assert [(d.kind, d.first) for d in log.damage.recent()] == [(RECORD, where)]
    assert log.append("m21", 2e9, "msg_21").offset == 21


def test_a_changed_offset_field_is_caught(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log(segment_bytes=100_000)
    fill(log, 70)
    log.close()
    seg = segment_files(tmp_path / "topics" / "t")[0]
    line = _lines(seg)[61]
    _rewrite(seg, 61, line.replace(b'"offset":61', b'"offset":6100'))
    log = open_log(segment_bytes=100_000)
    offsets = [r.offset for r in log.read(1, 1000)]
    assert 6100 not in offsets and offsets == [o for o in range(1, 71) if o != 61]
    assert log.damage.recent()[0].first == 61


def test_damaged_header_of_a_sealed_segment_costs_only_the_header(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log = open_log()
    fill(log, 60)
    log.close()
    first = segment_files(tmp_path / "topics" / "t")[0]
    _rewrite(first, 0, b'{"linemq_segmXnt":2,"base_offset":1}\n')
    log = open_log()
    assert [r.offset for r in log.read(1, 1000)] == list(range(1, 61))
    assert [d.kind for d in log.damage.recent()] == [SEGMENT]
    assert log.offset_at(0.0) == 1


def test_damaged_header_of_the_newest_segment_does_not_stop_the_topic(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log = open_log()
    fill(log, 60)
    log.close()
    last = segment_files(tmp_path / "topics" / "t")[-1]
    _rewrite(last, 0, b"\x00\x01garbage header\n")
    log = open_log()
    assert log.last_offset == 60
    assert [r.offset for r in log.read(1, 1000)] == list(range(1, 61))
    assert [d.kind for d in log.damage.recent()] == [SEGMENT]
    fill(log, 5)
    log.close()
    assert [r.offset for r in open_log().read(1, 1000)] == list(range(1, 66))


def test_time_lookup_and_retention_reads_skip_damaged_records(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log = open_log()
    fill(log, 60)
    log.close()
    first = segment_files(tmp_path / "topics" / "t")[0]
    lines = _lines(first)
    n = len(lines) - 1
    _rewrite(first, n, lines[n].replace(b'"ts":', b'"ts":9'))  # the newest record's time
    _rewrite(first, 1, lines[1].replace(b'"ts":', b'"ts":9'))  # and the first's
    rec = newest_record(first)
    assert rec is not None and rec.offset == n - 1
    log = open_log()
    assert log.offset_at(1700000000.0 + 1.5) == 2


def test_decode_lines_checks_every_line_of_a_version_2_chunk() -> None:
    from linemq.broker.storage.segment import encode_record
    from linemq.broker.storage.segment_scan import LineScan, decode_lines

    lines = [encode_record(o, f"msg_{o}", 1.0, f"m{o}") for o in range(1, 11)]
    lines[4] = lines[4].replace(b"m5", b"m6")
    found: list[tuple[int, int | None]] = []
    scan = LineScan(1, 2, None, lambda pos, first, last, why: found.append((pos, first)))
    got = decode_lines(b"".join(lines), 1, 100, scan, 0)
    assert [r.offset for r in got] == [1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert found == [(sum(map(len, lines[:4])), 5)]


V1_META_FIELDS = ("data", "headers", "key", "priority", "deliver_at", "expires_at", "pid")
"""The ``Meta`` fields of the release that wrote the fixture; fields added since are unset."""


def _v1_repr(meta: Meta) -> str:
    """``repr(meta)`` as the fixture's release printed it (later fields must be defaults)."""
    later = {f.name for f in dataclasses.fields(meta)} - set(V1_META_FIELDS)
    default = Meta()
    assert all(getattr(meta, name) == getattr(default, name) for name in later)
    return "Meta(" + ", ".join(f"{f}={getattr(meta, f)!r}" for f in V1_META_FIELDS) + ")"


def test_a_data_dir_of_the_previous_release_is_served_identically(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    with tarfile.open(FIXTURES / "v1_data.tar") as archive:  # a data dir, packed
        archive.extractall(data.parent, filter="data")
    (data.parent / "v1_data").rename(data)
    expected = json.loads((FIXTURES / "v1_expected.json").read_text())
    before = {p: p.read_bytes() for p in (data / "topics").rglob("*.log")}
    for topic, records in expected.items():
        log = TopicLog.open(data / "topics", topic, 600)
        got = log.read(1, 1000)
        assert [
            {
                "offset": r.offset,
                "id": r.id,
                "ts": r.ts,
                "msg": r.msg,
                "payload": base64.b64encode(r.payload).decode(),
                "meta": None if r.meta is None else _v1_repr(r.meta),
            }
            for r in got
        ] == records
        assert log.damage.recent() == []
        last = records[-1]["offset"]
        assert log.append("new", 2e9, "msg_new").offset == last + 1
        log.close()
        log = TopicLog.open(data / "topics", topic, 600)
        assert [r.offset for r in log.read(1, 1000)] == list(range(1, last + 2))
        newest = segment_files(data / "topics" / topic)[-1]
        assert newest.name == f"{last + 1:020d}.log"  # formats never mixed in one file
        assert orjson.loads(_lines(newest)[0])["linemq_segment"] == 2
        log.close()
    for path, raw in before.items():
        assert path.read_bytes() == raw  # version-1 files are read, never rewritten


def test_header_of_a_later_version_is_refused_not_taken_for_damage(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    from linemq.broker.storage.segment import SegmentFormatError

    log = open_log()
    fill(log, 5)
    log.close()
    seg = segment_files(tmp_path / "topics" / "t")[0]
    _rewrite(seg, 0, seal(orjson.dumps({"linemq_segment": 3, "base_offset": 1})))
    with pytest.raises(SegmentFormatError, match="version 3"):
        open_log()
