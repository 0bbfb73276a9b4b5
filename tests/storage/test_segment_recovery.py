from __future__ import annotations

import os
import pathlib

import orjson
import pytest
from storage_helpers import OpenLog, fill, segment_files

from linemq.broker.storage import index as index_mod
from linemq.broker.storage.checksum import seal
from linemq.broker.storage.index import INDEX_ENTRY
from linemq.broker.storage.segment import SegmentFormatError, encode_header, encode_record


def _last_segment(tmp_path: pathlib.Path) -> pathlib.Path:
    last: pathlib.Path = segment_files(tmp_path / "topics" / "t")[-1]
    return last


def _closed_log(open_log: OpenLog, n: int = 30, segment_bytes: int = 1000) -> None:
    log = open_log(segment_bytes=segment_bytes)
    fill(log, n)
    log.close()


@pytest.mark.parametrize(
    "debris",
    [
        b"garbage without newline",
        b'{"id":"msg_31","offset":31,"ts":1.0,"ms',
        b"\0" * 4096,
        b"not json at all\n",
        encode_record(31, "msg_31", 1.0, "ok") + b"\0\0\0\0",
        b"\0" * 100 + b"\n",
    ],
    ids=["garbage", "half-line", "zero-block", "bad-line", "zeros-after-good", "zeros-newline"],
)
def test_torn_tail_is_truncated_and_offsets_continue(
    open_log: OpenLog, tmp_path: pathlib.Path, debris: bytes
) -> None:
    _closed_log(open_log)
    seg = _last_segment(tmp_path)
    with seg.open("ab") as f:
        f.write(debris)
    keeps_one = debris.startswith(b'{"id":"msg_31"') and b'"ok"' in debris
    log = open_log()
    expected_last = 31 if keeps_one else 30
    assert log.last_offset == expected_last
    data = seg.read_bytes()
    assert data.endswith(b"\n") and b"\0" not in data and b"garbage" not in data
    fill(log, 3)
    got = log.read(1, 1000, max_bytes=1 << 30)
    assert [r.offset for r in got] == list(range(1, expected_last + 4))
    log.close()
    assert open_log().last_offset == expected_last + 3


def test_truncation_is_logged(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    import structlog

    _closed_log(open_log)
    with _last_segment(tmp_path).open("ab") as f:
        f.write(b"x" * 17)
    with structlog.testing.capture_logs() as logs:
        open_log()
    [event] = [e for e in logs if e["event"] == "segment_truncated"]
    assert event["topic"] == "t" and event["bytes_dropped"] == 17
    assert event["segment"].endswith(".log")


def test_index_entries_beyond_eof_are_dropped(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    _closed_log(open_log, n=400, segment_bytes=100_000)
    seg = _last_segment(tmp_path)
    idx = seg.with_suffix(".idx")
    good = idx.read_bytes()
    size = seg.stat().st_size
    with idx.open("ab") as f:
        f.write(INDEX_ENTRY.pack(401, size + 10) + INDEX_ENTRY.pack(900, size * 2) + b"\1" * 7)
    log = open_log(segment_bytes=100_000)
    assert idx.read_bytes() == good
    assert log.read(399, 5)[0].offset == 399
    fill(log, 300)
    log.close()
    log = open_log(segment_bytes=100_000)
    entries = list(INDEX_ENTRY.iter_unpack(idx.read_bytes()))
    assert all(pos < seg.stat().st_size for _, pos in entries)
    assert len(entries) > len(good) // INDEX_ENTRY.size


def test_index_pointing_into_truncated_tail_is_dropped(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    _closed_log(open_log, n=400, segment_bytes=100_000)
    seg = _last_segment(tmp_path)
    idx = seg.with_suffix(".idx")
    size = seg.stat().st_size
    with seg.open("ab") as f:
        f.write(b'{"id":"msg_401","offset":401,"ts":1.0,"msg":"torn')
    with idx.open("ab") as f:
        f.write(INDEX_ENTRY.pack(401, size))
    log = open_log(segment_bytes=100_000)
    assert log.last_offset == 400
    assert all(pos < size for _, pos in INDEX_ENTRY.iter_unpack(idx.read_bytes()))
    fill(log, 1)
    assert log.read(401, 1)[0].msg == "m401"


def test_missing_index_is_rebuilt(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    _closed_log(open_log, n=400, segment_bytes=100_000)
    idx = _last_segment(tmp_path).with_suffix(".idx")
    original = idx.read_bytes()
    idx.unlink()
    log = open_log(segment_bytes=100_000)
    assert idx.read_bytes() == original
    assert [r.offset for r in log.read(250, 2)] == [250, 251]


def test_recovery_reads_only_the_tail(
    open_log: OpenLog, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=2_000_000)
    for i in range(1, 40_001):
        log.append(f"message {i}", 1.0, f"msg_{i}")
    log.close()
    assert len(segment_files(tmp_path / "topics" / "t")) > 1
    read_bytes = 0
    real_pread = os.pread

    def counting_pread(fd: int, n: int, pos: int) -> bytes:
        nonlocal read_bytes
        data = real_pread(fd, n, pos)
        read_bytes += len(data)
        return data

    def no_sealed(*_: object) -> object:
        raise AssertionError("recovery must not load sealed segments")

    monkeypatch.setattr(os, "pread", counting_pread)
    monkeypatch.setattr(index_mod, "load_sealed", no_sealed)
    log = open_log(segment_bytes=2_000_000)
    assert log.last_offset == 40_000
    assert read_bytes < 200_000


def test_empty_last_segment_gives_last_offset_from_name(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    _closed_log(open_log)
    base = int(_last_segment(tmp_path).stem)
    after = tmp_path / "topics" / "t" / f"{base + 100:020d}.log"
    after.write_bytes(encode_header(base + 100))
    log = open_log()
    assert log.last_offset == base + 99
    assert log.append("next", 1.0, "msg_n").offset == base + 100
    log.write()
    assert log.read(base + 100, 5)[0].msg == "next"


@pytest.mark.parametrize("cut", [0, 1, 10])
def test_torn_header_is_repaired(open_log: OpenLog, tmp_path: pathlib.Path, cut: int) -> None:
    _closed_log(open_log)
    base = int(_last_segment(tmp_path).stem)
    after = tmp_path / "topics" / "t" / f"{base + 50:020d}.log"
    after.write_bytes(encode_header(base + 50)[:cut])
    log = open_log()
    assert log.last_offset == base + 49
    fill(log, 1)
    assert after.read_bytes().startswith(encode_header(base + 50))
    log.close()
    assert open_log().last_offset == base + 50


def test_unknown_segment_version_refused(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    _closed_log(open_log)
    seg = _last_segment(tmp_path)
    data = seg.read_bytes()
    header = seal(orjson.dumps({"linemq_segment": 3, "base_offset": 21}))
    seg.write_bytes(header + data.split(b"\n", 1)[1])
    with pytest.raises(SegmentFormatError, match=r"version 3.*") as err:
        open_log()
    assert seg.name in str(err.value)


def test_unknown_version_of_sealed_segment_refused_on_read(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    _closed_log(open_log)
    first = segment_files(tmp_path / "topics" / "t")[0]
    header = seal(orjson.dumps({"linemq_segment": 9, "base_offset": 1}))
    first.write_bytes(header + first.read_bytes().split(b"\n", 1)[1])
    log = open_log()
    with pytest.raises(SegmentFormatError, match=first.name):
        log.read(1, 5)


def test_missing_header_costs_no_record(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    _closed_log(open_log)
    seg = _last_segment(tmp_path)
    lines = seg.read_bytes().split(b"\n", 1)
    seg.write_bytes(lines[1])
    log = open_log()
    assert [r.offset for r in log.read(1, 100)] == list(range(1, 31))
    assert log.damage.counts()["segment"] == 1
