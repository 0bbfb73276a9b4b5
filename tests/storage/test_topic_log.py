from __future__ import annotations

import pathlib
import random
import threading
import time

import pytest
from storage_helpers import OpenLog, fill, segment_files

from linemq.broker.storage import segment_scan
from linemq.broker.storage.checksum import seal
from linemq.broker.storage.records import Meta, Record
from linemq.broker.storage.topic_log import TopicLog


def test_append_write_read_round_trip(open_log: OpenLog) -> None:
    log = open_log()
    rec = log.append("hello\nworld", 1700000000.5, "msg_a")
    assert rec == Record(1, "msg_a", 1700000000.5, "hello\nworld")
    log.write()
    assert log.read(1, 10) == [rec]


def test_offsets_are_contiguous_from_one(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 250)
    assert log.last_offset == 250
    assert [r.offset for r in log.read(1, 1000, max_bytes=1 << 30)] == list(range(1, 251))


def test_append_does_no_io_until_write(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log()
    log.append("x", 1.0, "msg_1")
    assert log.has_pending and log.last_offset == 1
    assert not (tmp_path / "topics").exists()
    assert log.read(1, 10) == [] and log.read_cached(1, 10) == []
    log.write()
    assert not log.has_pending
    assert [r.msg for r in log.read(1, 10)] == ["x"]


@pytest.mark.parametrize("existing", [0, 3])
def test_written_hook_runs_once_the_file_holds_every_record(
    open_log: OpenLog, tmp_path: pathlib.Path, existing: int
) -> None:
    """The hook a lone publish replies from: the bytes are in the file, reads follow."""
    log = open_log(segment_bytes=400)
    fill(log, existing)
    for i in range(6):  # rolls a segment inside the pending batch
        log.append(f"new{i}-" + "x" * 40, 1.0, f"msg_n{i}")
    files = tmp_path / "topics" / "t"
    seen: list[bytes] = []
    log.write(lambda: seen.append(b"".join(f.read_bytes() for f in segment_files(files))))
    assert len(seen) == 1
    assert all(f"new{i}-".encode() in seen[0] for i in range(6))
    assert [r.msg[:5] for r in log.read(existing + 1, 10)] == [f"new{i}-" for i in range(6)]
    assert log.read_cached(existing + 6, 1)[0].id == "msg_n5"


def test_written_hook_runs_before_the_bookkeeping_and_when_nothing_is_pending(
    open_log: OpenLog,
) -> None:
    log = open_log()
    calls: list[int] = []
    log.write(lambda: calls.append(log.written_offset))
    assert calls == [0], "nothing pending: everything is already with the OS"
    fill(log, 1)
    log.append("x", 1.0, "msg_x")
    log.write(lambda: calls.append(log.written_offset))
    assert calls == [0, 1], "runs before the batch is accounted for"
    assert log.written_offset == 2


def test_meta_last_offset_marks_where_plain_records_begin(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 3)
    assert log.meta_last_offset == 0, "plain records only"
    log.append("urgent", 1.0, "msg_u", Meta(priority=9))
    log.append_many(["a", "b"], 1.0, ["msg_a", "msg_b"], Meta(key="k"))
    fill(log, 2)
    assert log.meta_last_offset == 6
    log.close()
    again = open_log()
    assert again.meta_last_offset == 8, "unknown after a restart: the last offset"


def test_reopen_keeps_last_offset_and_data(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 40)
    log.close()
    again = open_log()
    assert again.last_offset == 40 and again.first_offset == 1
    assert [r.msg for r in again.read(38, 10)] == ["m38", "m39", "m40"]
    fill(again, 2)
    assert [r.offset for r in again.read(39, 10)] == [39, 40, 41, 42]


def test_empty_log_offsets(open_log: OpenLog) -> None:
    log = open_log()
    assert (log.first_offset, log.last_offset) == (1, 0)
    assert log.read(1, 10) == [] and log.read_last(5) == []


def test_segment_roll_names_show_base_offsets(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log(segment_bytes=1000)
    fill(log, 100)
    files = segment_files(tmp_path / "topics" / "t")
    assert len(files) > 3
    bases = [int(f.stem) for f in files]
    assert bases[0] == 1 and bases == sorted(bases)
    assert all(len(f.stem) == 20 for f in files)
    assert all(f.stat().st_size <= 1000 for f in files)
    for base, f in zip(bases, files, strict=True):
        first = f.read_bytes().split(b"\n")[1]
        assert f'"offset":{base},'.encode() in first
    got = log.read(1, 1000, max_bytes=1 << 30)
    assert [r.offset for r in got] == list(range(1, 101))
    boundary = bases[2]
    assert [r.offset for r in log.read(boundary - 1, 3)] == [boundary - 1, boundary, boundary + 1]


def test_segment_rolls_inside_one_pending_batch(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log(segment_bytes=300)
    for i in range(1, 21):
        log.append(f"m{i}", 1.0, f"msg_{i}")
    log.write()
    assert len(segment_files(tmp_path / "topics" / "t")) > 2
    log.close()
    again = open_log(segment_bytes=300)
    assert [r.offset for r in again.read(1, 100)] == list(range(1, 21))


@pytest.mark.parametrize("segment_bytes", [700, 5_000, 1_000_000])
def test_runs_write_the_same_files_as_single_appends(
    tmp_path: pathlib.Path, segment_bytes: int
) -> None:
    """Runs are placed in one step: the logs and sparse indexes must match byte for byte."""
    rng = random.Random(segment_bytes)
    msgs = [f"m{i}-" + "x" * rng.randrange(0, 300) for i in range(1, 1201)]
    one = TopicLog.open(tmp_path / "one", "t", segment_bytes)
    runs = TopicLog.open(tmp_path / "runs", "t", segment_bytes)
    for i, msg in enumerate(msgs, 1):
        one.append(msg, 1.5, f"msg_{i}")
    one.write()
    done = 0
    while done < len(msgs):
        n = rng.choice([1, 2, 7, 64, 300])
        batch = msgs[done : done + n]
        runs.append_many(batch, 1.5, [f"msg_{i}" for i in range(done + 1, done + len(batch) + 1)])
        done += len(batch)
        if rng.random() < 0.3:
            runs.write()
    runs.write()
    files = sorted(p.name for p in (tmp_path / "one" / "t").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "runs" / "t").iterdir())
    assert len(files) > 2 or segment_bytes > 100_000
    for name in files:
        expected = (tmp_path / "one" / "t" / name).read_bytes()
        assert (tmp_path / "runs" / "t" / name).read_bytes() == expected, name
    assert [r.msg for r in runs.read(1, 2000, 1 << 30)] == msgs


def test_oversized_record_takes_a_segment_alone(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log(segment_bytes=200)
    log.append("a", 1.0, "msg_1")
    log.append("x" * 1000, 1.0, "msg_2")
    log.append("b", 1.0, "msg_3")
    log.write()
    assert [int(f.stem) for f in segment_files(tmp_path / "topics" / "t")] == [1, 2, 3]
    assert [r.offset for r in log.read(1, 10)] == [1, 2, 3]


def test_read_from_middle_of_big_log_seeks_via_index(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=256 * 1024)
    for i in range(1, 50_001):
        log.append(f"message number {i}", 1700000000.0, f"msg_{i}")
        if i % 5000 == 0:
            log.write()
    log.close()
    log = open_log(segment_bytes=256 * 1024)  # cold: empty tail cache, no sealed index loaded

    chunks = 0
    real = segment_scan.iter_chunks

    def counting(*args: object) -> object:
        nonlocal chunks
        for item in real(*args):  # type: ignore[arg-type]
            chunks += 1
            yield item

    monkeypatch.setattr(segment_scan, "iter_chunks", counting)
    t0 = time.perf_counter()
    got = log.read(25_000, 10)
    elapsed = time.perf_counter() - t0
    assert [r.offset for r in got] == list(range(25_000, 25_010))
    assert chunks == 1  # one read from the index entry, not a scan from the header
    assert elapsed < 0.5  # generous for loaded CI; typically ~1 ms
    assert [r.offset for r in log.read(49_995, 100)] == list(range(49_995, 50_001))


def test_read_respects_max_bytes_but_returns_one(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1 << 20)
    for i in range(1, 11):
        log.append("x" * 100, 1.0, f"msg_{i}")
    log.write()
    log.close()
    log = open_log(segment_bytes=1 << 20)
    assert len(log.read(1, 100, max_bytes=250)) == 2
    assert len(log.read(1, 100, max_bytes=10)) == 1
    assert log.read_cached(1, 100) is None  # cold: the tail cache starts empty


def test_read_last(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 30)
    assert [r.offset for r in log.read_last(3)] == [28, 29, 30]
    assert log.read_last(0) == [] and log.read_last(-1) == []
    assert [r.offset for r in log.read_last(100)] == list(range(1, 31))
    log.close()
    cold = open_log()
    assert [r.offset for r in cold.read_last(4)] == [27, 28, 29, 30]
    assert len(cold.read_last(100)) == 30


def test_read_cached_serves_tail_only(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1 << 20)
    fill(log, 5000)
    assert log.read_cached(1, 10) is None  # evicted: tail holds 4096
    assert [r.offset for r in log.read_cached(4990, 5) or []] == list(range(4990, 4995))
    assert log.read_cached(5001, 10) == []
    log.append("pending", 1.0, "msg_p")
    assert log.read_cached(5001, 10) == []  # pending is never served


def test_sealed_indexes_are_cached_with_a_bound(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=500)
    fill(log, 400)
    log.close()
    log = open_log(segment_bytes=500)
    assert len(log.read(1, 1000, max_bytes=1 << 30)) == 400
    assert len(log._sealed) <= 16


def test_readers_ignore_unknown_keys(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log()
    fill(log, 2)
    log.close()
    seg = tmp_path / "topics" / "t" / "00000000000000000001.log"
    with seg.open("ab") as f:
        f.write(seal(b'{"id":"msg_3","offset":3,"ts":3.0,"msg":"m3","prio":7,"hdr":{"a":1}}'))
    log = open_log()
    assert log.last_offset == 3
    assert log.read(3, 1) == [Record(3, "msg_3", 3.0, "m3")]


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "a\0b", "", "a..b", "sp ace"])
def test_unsafe_topic_names_refused(tmp_path: pathlib.Path, name: str) -> None:
    with pytest.raises(ValueError):
        TopicLog(tmp_path, name)


def test_non_finite_timestamp_refused(open_log: OpenLog) -> None:
    log = open_log()
    with pytest.raises(ValueError):
        log.append("x", float("nan"), "msg_1")
    assert log.last_offset == 0


def test_sync_and_reads_in_threads_while_appending(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=2000)
    stop = threading.Event()
    errors: list[BaseException] = []

    def syncer() -> None:
        try:
            while not stop.is_set():
                log.sync()
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                got = log.read(1, 100_000, max_bytes=1 << 30)
                assert [r.offset for r in got] == list(range(1, len(got) + 1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=syncer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for _ in range(100):
        fill(log, 20)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    log.close()
    assert open_log(segment_bytes=2000).last_offset == 2000


def _lines(first: int, n: int) -> list[bytes]:
    return [b'{"id":"msg_%d","offset":%d,"ts":1.0,"msg":"m%d"}\n' % (o, o, o)
            for o in range(first, first + n)]  # fmt: skip


def test_decode_lines_takes_only_the_lines_asked_for() -> None:
    chunk = b"".join(_lines(10, 20))
    assert [r.offset for r in segment_scan.decode_lines(chunk, 15, 3)] == [15, 16, 17]
    assert [r.offset for r in segment_scan.decode_lines(chunk, 1, 2)] == [10, 11]
    assert segment_scan.decode_lines(chunk, 40, 5) == []  # all before the start
    assert len(segment_scan.decode_lines(chunk)) == 20


def test_decode_lines_skips_damage_and_survives_gaps() -> None:
    lines = _lines(1, 10)
    lines[3] = b"\x00" * 20 + b"\n"  # zeroed by a crash
    damaged = segment_scan.decode_lines(b"".join(lines), 1, 100)
    assert [r.offset for r in damaged] == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    gap = b"".join(_lines(1, 3) + _lines(8, 3))  # counting lines would land on the wrong one
    wanted = [r.offset for r in segment_scan.decode_lines(gap, 8, 2) if r.offset >= 8]
    assert wanted[:2] == [8, 9]
