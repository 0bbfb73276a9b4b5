"""TopicLog.offset_at: the first written record at or after a time, found without a full scan."""

from __future__ import annotations

import pathlib
import random
import threading

import pytest
from storage_helpers import OpenLog

from linemq.broker.storage import segment as segment_mod
from linemq.broker.storage import time_index as time_index_mod
from linemq.broker.storage.records import Record
from linemq.broker.storage.topic_log import TopicLog

T0 = 1700000000.0


def _fill_ts(log: TopicLog, stamps: list[float]) -> None:
    start = log.last_offset
    for i, ts in enumerate(stamps, start + 1):
        log.append(f"m{i}", ts, f"msg_{i}")
    log.write()


def _all(log: TopicLog) -> list[Record]:
    return log.read(1, 10**9, max_bytes=1 << 40)


def _brute(records: list[Record], ts: float, written: int) -> int:
    return next((r.offset for r in records if r.ts >= ts), written + 1)


def _check_exact(log: TopicLog) -> None:
    """Against a full scan, for every record's ts, just below and just above it."""
    records = _all(log)
    written = log.written_offset
    for rec in records:
        for ts in (rec.ts - 0.25, rec.ts, rec.ts + 0.25):
            assert log.offset_at(ts) == _brute(records, ts, written), ts


# -- monotonic timestamps --------------------------------------------------------------------


@pytest.mark.parametrize("segment_bytes", [1000, 64 * 1024], ids=["tiny-segments", "indexed"])
def test_exact_answers_across_segments(open_log: OpenLog, segment_bytes: int) -> None:
    log = open_log(segment_bytes=segment_bytes)
    n = 4500 if segment_bytes > 1000 else 300
    _fill_ts(log, [T0 + (i + 2) // 3 for i in range(1, n + 1)])  # ts T0+k at offsets 3k-2..3k
    assert log.segment_count > 3
    assert log.offset_at(T0 - 100) == log.first_offset == 1  # before the first record
    assert log.offset_at(T0 + 1) == 1  # equal to a record's ts: the first of its run
    assert log.offset_at(T0 + 2) == 4
    assert log.offset_at(T0 + 2.5) == 7  # between records
    assert log.offset_at(T0 + n // 3) == n - 2  # the last run
    assert log.offset_at(T0 + n // 3 + 0.001) == n + 1  # after the last: last + 1
    assert log.offset_at(float("inf")) == n + 1
    assert log.offset_at(float("-inf")) == 1
    _check_exact(log)


def test_nan_refused(open_log: OpenLog) -> None:
    with pytest.raises(ValueError):
        open_log().offset_at(float("nan"))


def test_empty_log_and_pending_records(open_log: OpenLog) -> None:
    log = open_log()
    assert log.offset_at(T0) == 1  # never written: last written (0) + 1
    log.append("a", T0 + 1, "a")
    assert log.offset_at(T0) == 1  # pending records do not count
    log.write()
    assert log.offset_at(T0) == 1 and log.offset_at(T0 + 1) == 1 and log.offset_at(T0 + 2) == 2
    for i in range(2, 40):
        log.append(f"m{i}", T0 + i, f"id{i}")
    assert log.offset_at(T0 + 5) == 2  # still only offset 1 is written
    log.write()
    assert log.offset_at(T0 + 5) == 5


def test_reopen_gives_the_same_answers(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=16 * 1024)
    _fill_ts(log, [T0 + i for i in range(1, 1001)])
    log.close()
    again = open_log(segment_bytes=16 * 1024)
    assert again.offset_at(T0 + 500) == 500
    _check_exact(again)


# -- retention and purge -----------------------------------------------------------------------


def test_after_retention_dropped_old_segments(open_log: OpenLog, tmp_path: pathlib.Path) -> None:
    log = open_log()
    _fill_ts(log, [T0 + i for i in range(1, 201)])
    assert log.offset_at(T0 + 50) == 50  # caches first records of some segments
    log.apply_retention(log.size_bytes // 2, None, 0.0)
    first = log.first_offset
    assert first > 50
    assert log.offset_at(T0 + 50) == first  # its records are gone: the oldest that remain
    assert log.offset_at(T0 - 1) == first
    assert log.offset_at(T0 + first) == first
    assert log.offset_at(T0 + first + 7.5) == first + 8
    assert log.offset_at(T0 + 201) == 201
    _check_exact(log)
    log.close()
    again = open_log()
    assert again.offset_at(T0) == first
    _check_exact(again)


def test_after_purge_and_appends_again(open_log: OpenLog) -> None:
    log = open_log()
    _fill_ts(log, [T0 + i for i in range(1, 101)])
    assert log.offset_at(T0 + 40) == 40
    log.purge()
    assert log.first_offset == 101
    for ts in (T0 - 1, T0 + 40, T0 + 1000):
        assert log.offset_at(ts) == 101
    _fill_ts(log, [T0 + 1000 + i for i in range(1, 51)])
    assert log.offset_at(T0) == 101
    assert log.offset_at(T0 + 1010) == 110
    _check_exact(log)


# -- clocks that step back -------------------------------------------------------------------


def _check_step_back_property(log: TopicLog, ts: float) -> None:
    """What a search that trusts rough monotonicity still guarantees."""
    records = {r.offset: r for r in _all(log)}
    got = log.offset_at(ts)
    assert log.first_offset <= got <= log.written_offset + 1
    if got <= log.written_offset:
        assert records[got].ts >= ts  # never a record older than asked
    if got > log.first_offset:
        assert records[got - 1].ts < ts  # the scan started before it, below ts


@pytest.mark.parametrize("seed", range(5))
def test_clock_steps_back(open_log: OpenLog, seed: int) -> None:
    rnd = random.Random(seed)
    log = open_log(segment_bytes=rnd.choice([1000, 8192, 64 * 1024]))
    t, stamps = T0, []
    for _ in range(1500):
        t += rnd.random()
        if rnd.random() < 0.01:
            t -= rnd.uniform(0, 30)  # NTP steps the clock back
        stamps.append(round(t, 3))
    _fill_ts(log, stamps)
    for _ in range(200):
        _check_step_back_property(log, rnd.uniform(T0 - 10, t + 10))
    for s in stamps[::37]:
        _check_step_back_property(log, s)


def test_one_step_back_inside_a_segment(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=1 << 20)
    _fill_ts(log, [T0 + i for i in range(1, 101)] + [T0 + 50 + i for i in range(1, 101)])
    # ts T0+75 appears twice (offsets 75 and 125); the bisect may land on either
    # side of the step but the answer is always a record at or after the time.
    assert log.offset_at(T0 + 75) in (75, 125)
    assert log.offset_at(T0 + 120) == 170  # only after the step
    assert log.offset_at(T0 + 151) == 201


# -- cost ------------------------------------------------------------------------------------


def test_lookup_reads_a_bounded_number_of_records(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 50_000
    log = open_log(segment_bytes=512 * 1024)
    _fill_ts(log, [T0 + i * 0.01 for i in range(1, n + 1)])
    log.sync()
    assert log.segment_count > 4
    log.close()  # reopen: nothing cached, sealed indexes come from disk
    log = open_log(segment_bytes=512 * 1024)

    decoded = 0
    real = segment_mod.decode_record

    def counting(line: bytes, version: int = 2) -> Record | None:
        nonlocal decoded
        decoded += 1
        return real(line, version)

    monkeypatch.setattr(segment_mod, "decode_record", counting)
    monkeypatch.setattr(time_index_mod, "decode_record", counting)
    for offset in (1, 7, 12_345, 25_000, 37_777, 49_999, n):
        decoded = 0
        assert log.offset_at(T0 + offset * 0.01 - 0.001) == offset
        assert decoded < 300, (offset, decoded)
    decoded = 0
    assert log.offset_at(T0 + n) == n + 1
    assert decoded < 300


# -- threads ---------------------------------------------------------------------------------


def test_lookups_race_appends_and_retention(open_log: OpenLog) -> None:
    """Every answer is right for the log at some moment of the call; no file errors."""
    log = open_log()
    _fill_ts(log, [T0 + i for i in range(1, 101)])
    stop = threading.Event()
    errors: list[BaseException] = []

    def lookups() -> None:
        rnd = random.Random(1)
        try:
            while not stop.is_set():
                first0, written0 = log.first_offset, log.written_offset
                x = rnd.randint(1, written0 + 20)
                got = log.offset_at(T0 + x)
                first1, written1 = log.first_offset, log.written_offset
                ok = (
                    (got == x and first0 <= x <= written1)
                    or (x <= got and first0 <= got <= first1)
                    or (written0 + 1 <= got <= min(x, written1 + 1))
                )
                assert ok, (x, got, first0, first1, written0, written1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=lookups) for _ in range(3)]
    for th in threads:
        th.start()
    try:
        for _ in range(150):
            _fill_ts(log, [T0 + log.last_offset + i for i in range(1, 8)])
            log.apply_retention(6000, None, 0.0)
    finally:
        stop.set()
        for th in threads:
            th.join()
    assert not errors, errors[0]
    assert log.first_offset > 100
    _check_exact(log)
