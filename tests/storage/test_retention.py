"""Retention (whole old segments by size or age), purge, and what reads see afterwards."""

from __future__ import annotations

import os
import pathlib
import threading

import pytest
from storage_helpers import OpenLog, fill, segment_files

from linemq.broker.storage import retention as retention_mod
from linemq.broker.storage import topic_log as topic_log_mod
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.retention import RetentionResult, newest_record
from linemq.broker.storage.topic_log import TopicLog

T0 = 1700000000.0  # fill() stamps record i with T0 + i


def _disk_bytes(log_dir: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in log_dir.iterdir() if p.suffix in (".log", ".idx"))


def _offsets(log: TopicLog, start: int = 1) -> list[int]:
    return [r.offset for r in log.read(start, 100_000, max_bytes=1 << 30)]


def _bases(log_dir: pathlib.Path) -> list[int]:
    return [int(p.stem) for p in segment_files(log_dir)]


# -- size accounting -------------------------------------------------------------------------


def test_size_bytes_tracks_disk_through_writes_rolls_and_reopen(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log_dir = tmp_path / "topics" / "t"
    log = open_log()
    assert (log.size_bytes, log.segment_count) == (0, 0)
    for _ in range(5):
        fill(log, 17)
        assert log.size_bytes == _disk_bytes(log_dir)
        assert log.segment_count == len(segment_files(log_dir))
    assert log.segment_count > 3
    log.close()
    again = open_log()
    assert again.size_bytes == _disk_bytes(log_dir)
    assert again.segment_count == len(segment_files(log_dir))


def test_size_bytes_does_not_touch_files(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()
    fill(log, 50)

    def no_stat(*_: object, **__: object) -> object:
        raise AssertionError("size_bytes must not stat")

    # Patched only around the two reads: anything else in the process may stat freely.
    with monkeypatch.context() as patched:
        patched.setattr(os, "stat", no_stat)
        patched.setattr(os, "fstat", no_stat)
        size, count = log.size_bytes, log.segment_count
    assert size > 0 and count > 1


# -- retention by size -----------------------------------------------------------------------


def test_retention_by_bytes_keeps_newest_and_never_the_active(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log_dir = tmp_path / "topics" / "t"
    log = open_log()
    fill(log, 100)
    before = _bases(log_dir)
    limit = log.size_bytes // 2
    expired = log.expired_segments(limit, None, 0.0)
    assert [s.base for s in expired] == before[: len(expired)]  # oldest first, a prefix
    dropped = sum(s.size_bytes for s in expired)
    assert log.size_bytes - dropped <= limit
    assert log.size_bytes - dropped + expired[-1].size_bytes > limit  # no more than needed
    assert log.segment_count == len(before)  # deciding changes nothing

    result = log.apply_retention(limit, None, 0.0)
    assert result.segments == len(expired) and result.bytes == dropped
    assert result.records == before[len(expired)] - 1
    assert _bases(log_dir) == before[len(expired) :]
    assert log.size_bytes == _disk_bytes(log_dir) <= limit
    assert log.first_offset == before[len(expired)] and log.last_offset == 100

    everything = log.apply_retention(0, None, 0.0)  # cannot reach 0: the active one stays
    assert _bases(log_dir) == [before[-1]] and log.segment_count == 1
    assert everything.segments == len(before) - len(expired) - 1
    assert log.size_bytes == _disk_bytes(log_dir) > 0
    assert log.apply_retention(0, None, 0.0) == RetentionResult()
    assert _offsets(log) == list(range(before[-1], 101))


def test_single_segment_log_is_never_touched(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1 << 20)
    fill(log, 10)
    assert log.expired_segments(0, 0.0, T0 + 10**9) == []
    assert open_log(name="empty").expired_segments(0, 0.0, T0) == []


def test_invalid_limits_refused(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 30)
    with pytest.raises(ValueError):
        log.expired_segments(-1, None, T0)
    with pytest.raises(ValueError):
        log.expired_segments(None, -1.0, T0)
    assert log.expired_segments(None, None, T0) == []


# -- retention by age ------------------------------------------------------------------------


@pytest.mark.parametrize("cold", [False, True], ids=["sealed-while-running", "after-reopen"])
def test_retention_by_age_uses_newest_record_ts(
    open_log: OpenLog, tmp_path: pathlib.Path, cold: bool
) -> None:
    log = open_log()
    fill(log, 100)
    bases = _bases(tmp_path / "topics" / "t")
    if cold:
        log.close()
        log = open_log()
    # Segment k holds offsets [bases[k], bases[k+1] - 1]; its newest ts is T0 + bases[k+1] - 1.
    now, max_age = T0 + 1000.0, 1000.0 - (bases[3] - 1)  # cutoff == newest ts of segment 2
    expired = log.expired_segments(None, max_age, now)
    assert [s.base for s in expired] == bases[:2]  # segment 2 is exactly at the cutoff: kept
    assert [s.last_offset for s in expired] == [bases[1] - 1, bases[2] - 1]
    assert [s.base for s in log.expired_segments(None, max_age - 0.5, now)] == bases[:3]
    assert len(log.expired_segments(None, 0.0, T0 + 10**6)) == len(bases) - 1  # not the active
    result = log.apply_retention(None, max_age, now)
    assert result.segments == 2 and log.first_offset == bases[2]
    assert _offsets(log)[0] == bases[2]


def test_age_retention_stops_at_first_young_segment(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    """Offsets must stay contiguous, so an old segment after a young one is not dropped."""
    log = open_log()
    for i in range(1, 101):
        young = 20 <= i < 40  # a band of records with late timestamps (clock jump)
        log.append(f"m{i}", T0 + (10_000 if young else i), f"msg_{i}")
    log.write()
    bases = _bases(tmp_path / "topics" / "t")
    expired = log.expired_segments(None, 500.0, T0 + 1000.0)  # cutoff T0 + 500
    holding_20 = max(b for b in bases if b <= 20)
    assert [s.base for s in expired] == [b for b in bases if b < holding_20]
    assert len(bases) - len(expired) > 2  # old segments after the young band are kept


def test_age_lookup_reads_each_tail_once(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log()
    fill(log, 100)
    log.close()
    log = open_log()
    calls: list[pathlib.Path] = []
    real_newest = retention_mod.newest_record

    def counting(path: pathlib.Path) -> object:
        calls.append(path)
        return real_newest(path)

    monkeypatch.setattr(retention_mod, "newest_record", counting)
    first = log.expired_segments(None, 0.0, T0 + 10**6)
    n = len(calls)
    assert n == len(first)
    assert log.expired_segments(None, 0.0, T0 + 10**6) == first
    assert len(calls) == n  # cached
    fresh = open_log(name="u")
    fill(fresh, 100)  # segments sealed while running know their newest ts already
    fresh.expired_segments(None, 0.0, T0 + 10**6)
    assert len(calls) == n


def test_newest_record_handles_records_longer_than_a_read(tmp_path: pathlib.Path) -> None:
    log = TopicLog.open(tmp_path, "big", segment_bytes=1 << 30)
    log.append("a", 1.0, "msg_1")
    log.append("x" * 300_000, 2.0, "msg_2")
    log.close()
    path = segment_files(tmp_path / "big")[0]
    rec = newest_record(path)
    assert rec is not None and rec.offset == 2 and rec.ts == 2.0
    with path.open("ab") as f:
        f.write(b'{"torn":')
    assert newest_record(path) == rec
    header_only = tmp_path / "h.log"
    header_only.write_bytes(path.read_bytes().split(b"\n")[0] + b"\n")
    assert newest_record(header_only) is None


# -- reads after deletion --------------------------------------------------------------------


def test_reads_after_deletion_start_at_oldest_existing(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 100)  # the tail cache holds every record: dropped ones must not leak from it
    log.apply_retention(log.size_bytes // 3, None, 0.0)
    first = log.first_offset
    assert 1 < first <= 100
    assert _offsets(log, 1) == list(range(first, 101))
    assert _offsets(log, first - 1) == list(range(first, 101))
    assert [r.offset for r in log.read(0, 3)] == [first, first + 1, first + 2]
    assert [r.offset for r in log.read_cached(1, 3) or []] == [first, first + 1, first + 2]
    assert [r.offset for r in log.read_last(5)] == list(range(96, 101))
    assert [r.offset for r in log.read_last(1000)] == list(range(first, 101))
    assert log.read(101, 10) == [] and log.last_offset == 100


def test_cold_reads_after_deletion(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 100)
    log.close()
    log = open_log()  # empty tail cache: everything comes from files
    log.apply_retention(log.size_bytes // 3, None, 0.0)
    first = log.first_offset
    assert _offsets(log, 1) == list(range(first, 101))
    assert [r.offset for r in log.read_last(1000)] == list(range(first, 101))
    assert log.read_cached(1, 5) is None


# -- restart after deletion ------------------------------------------------------------------


def test_reopen_after_deletion_continues_offsets(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log()
    fill(log, 100)
    log.apply_retention(log.size_bytes // 2, None, 0.0)
    first = log.first_offset
    log.close()
    again = open_log()
    assert (again.first_offset, again.last_offset) == (first, 100)
    assert again.size_bytes == _disk_bytes(tmp_path / "topics" / "t")
    assert _offsets(again, 1) == list(range(first, 101))
    fill(again, 5)
    assert _offsets(again, 99) == [99, 100, 101, 102, 103, 104, 105]
    again.close()
    assert open_log().last_offset == 105


def test_crash_between_drop_and_unlink_leaves_segments_that_are_still_there(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log_dir = tmp_path / "topics" / "t"
    log = open_log()
    fill(log, 100)
    before = _bases(log_dir)
    result = log.apply_retention(log.size_bytes // 2, None, 0.0, delete=False)
    assert result.segments > 0 and log.first_offset > 1
    assert _bases(log_dir) == before  # nothing unlinked yet
    assert all(p.exists() for p in result.paths)
    log.close()  # "crash": the unlink never happens
    again = open_log()
    assert (again.first_offset, again.last_offset) == (1, 100)
    assert _offsets(again) == list(range(1, 101))
    assert again.size_bytes == _disk_bytes(log_dir)


def test_delete_files_in_a_worker_thread(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log()
    fill(log, 100)
    result = log.drop_segments(log.expired_segments(0, None, 0.0))
    worker = threading.Thread(target=log.delete_files, args=(result.paths,))
    worker.start()
    fill(log, 10)  # publishing goes on meanwhile
    worker.join()
    assert not any(p.exists() for p in result.paths)
    log.delete_files(result.paths)  # idempotent: already gone is fine
    assert _offsets(log)[-1] == 110


def test_stale_drop_list_is_harmless(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 100)
    expired = log.expired_segments(log.size_bytes // 2, None, 0.0)
    first = log.drop_segments(expired)
    assert first.segments == len(expired)
    assert log.drop_segments(expired) == RetentionResult()  # already gone
    assert log.drop_segments(expired[1:]) == RetentionResult()  # never a hole in the middle


# -- purge ------------------------------------------------------------------------------------


def test_purge_empties_but_offsets_keep_increasing(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log_dir = tmp_path / "topics" / "t"
    log = open_log()
    fill(log, 60)
    assert log.purge() == 60
    assert (log.first_offset, log.last_offset) == (61, 60)
    assert _bases(log_dir) == [61] and log.segment_count == 1
    assert log.size_bytes == _disk_bytes(log_dir)
    assert log.read(1, 10) == [] and log.read_last(10) == []
    assert log.read_cached(1, 10) == []
    assert log.append("after", T0, "msg_a").offset == 61
    log.write()
    assert [r.offset for r in log.read(1, 10)] == [61]
    assert [r.offset for r in log.read_last(10)] == [61]


def test_purge_survives_restart(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log()
    fill(log, 60)
    assert log.purge() == 60
    log.close()
    again = open_log()
    assert (again.first_offset, again.last_offset) == (61, 60)
    assert again.read(1, 10) == [] and again.read_last(5) == []
    assert again.purge() == 0  # nothing there: no new segment either
    assert _bases(tmp_path / "topics" / "t") == [61]
    fill(again, 3)
    again.close()
    third = open_log()
    assert (third.first_offset, third.last_offset) == (61, 63)
    assert third.purge() == 3
    third.close()
    fourth = open_log()
    assert (fourth.first_offset, fourth.last_offset) == (64, 63)
    assert fourth.append("x", T0, "msg_x").offset == 64


def test_purge_writes_pending_records_first(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 5)
    for i in range(6, 9):
        log.append(f"m{i}", T0 + i, f"msg_{i}")
    assert log.has_pending
    assert log.purge() == 8
    assert not log.has_pending and log.first_offset == 9 and log.last_offset == 8
    log.close()
    assert open_log().append("n", T0, "msg_n").offset == 9


def test_purge_of_a_never_written_log(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log()
    assert log.purge() == 0
    assert (log.first_offset, log.last_offset) == (1, 0)
    assert not (tmp_path / "topics").exists()


def test_failed_write_before_purge_purges_nothing(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=1 << 20)
    fill(log, 5)
    log.append("x", T0, "msg_x")

    def broken(*_: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", broken)
    with pytest.raises(StorageError):
        log.purge()
    monkeypatch.undo()
    assert (log.first_offset, log.last_offset) == (1, 5)
    assert _offsets(log) == [1, 2, 3, 4, 5]


def test_crash_during_purge_before_unlink(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log()
    fill(log, 60)
    result = log.purge_segments()
    assert result.records == 60
    log.close()  # "crash": old files were never unlinked
    again = open_log()
    assert (again.first_offset, again.last_offset) == (1, 60)  # the purge did not happen
    assert again.append("x", T0, "msg_x").offset == 61  # but offsets never repeat


def test_purge_after_recovered_empty_last_segment(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log = open_log()
    fill(log, 60)
    log.purge_segments()  # header-only segment 61 created, old files left behind
    log.close()
    again = open_log()  # active = the empty segment 61, sealed ones hold 1..60
    assert again.purge() == 60
    assert _bases(tmp_path / "topics" / "t") == [61]
    assert (again.first_offset, again.last_offset) == (61, 60)


# -- concurrency -----------------------------------------------------------------------------


@pytest.mark.parametrize("cold", [False, True], ids=["warm-index", "cold-index"])
def test_segment_vanishing_under_a_read_is_skipped(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch, cold: bool
) -> None:
    log = open_log()
    fill(log, 5000)  # more than the tail cache holds, so read(1) goes to the files
    if cold:
        log.close()
        log = open_log()
    real = topic_log_mod.read_segment
    fired = False

    def drop_first(*args: object) -> object:
        nonlocal fired
        if not fired:
            fired = True
            log.apply_retention(log.size_bytes // 2, None, 0.0)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(topic_log_mod, "read_segment", drop_first)
    if cold:  # the sealed index is loaded before read_segment: make the drop happen earlier
        real_get = log._sealed.get

        def get_then_drop(base: int) -> object:
            nonlocal fired
            if not fired:
                fired = True
                log.apply_retention(log.size_bytes // 2, None, 0.0)
            return real_get(base)

        monkeypatch.setattr(log._sealed, "get", get_then_drop)
    got = log.read(1, 10)
    assert fired
    first = log.first_offset
    assert first > 1
    assert [r.offset for r in got] == list(range(first, first + 10))


def test_reads_in_a_thread_while_segments_are_dropped(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=2000)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                start = max(log.first_offset - 5, 1)
                got = log.read(start, 100_000, max_bytes=1 << 30)
                for batch in (got, log.read_last(50)):
                    offs = [r.offset for r in batch]
                    assert offs == list(range(offs[0], offs[0] + len(offs)) if offs else [])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for round_ in range(150):
            fill(log, 20)
            if round_ % 3 == 0:
                result = log.apply_retention(6000, None, 0.0, delete=False)
                log.delete_files(result.paths)
            if round_ == 100:
                log.purge()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert log.last_offset == 3000
    log.close()
    again = open_log(segment_bytes=2000)
    assert again.last_offset == 3000
    assert _offsets(again) == list(range(again.first_offset, 3001))


def test_one_read_never_jumps_over_segments_dropped_under_it(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    log = open_log()
    fill(log, 5000)
    bases = _bases(tmp_path / "topics" / "t")
    real = topic_log_mod.read_segment
    calls = 0

    def drop_after_first(*args: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:  # segment 1 is read; now everything up to bases[10] goes
            log.apply_retention(None, 0.0, T0 + bases[10])
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(topic_log_mod, "read_segment", drop_after_first)
    got = log.read(1, 1000, max_bytes=1 << 30)
    assert log.first_offset == bases[10]
    assert [r.offset for r in got] == list(range(1, bases[1]))  # segment 1 only, no gap
    assert _offsets(log, got[-1].offset + 1)[0] == bases[10]  # the next read goes on from there
