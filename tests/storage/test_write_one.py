"""``TopicLog.write_one``: a lone publish written at once, the same as ``append`` + ``write``."""

from __future__ import annotations

import pathlib
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_helpers import OpenLog, fill, segment_files

from linemq.broker.storage.records import Record
from linemq.broker.storage.topic_log import TopicLog


def _lone(log: TopicLog, msg: str, ts: float, id: str) -> None:
    """What the broker does for a lone publish: ``write_one``, else the general path."""
    if log.write_one(msg, ts, id) is None:
        log.append(msg, ts, id)
        log.write()


def _files(topics: pathlib.Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted((topics / "t").iterdir())}


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=40),
    segment_bytes=st.sampled_from([1500, 20_000]),
)
def test_it_stores_byte_for_byte_what_append_and_write_store(
    sizes: list[int], segment_bytes: int
) -> None:
    # Small segments roll every few records; large ones carry several index entries.
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        one = TopicLog.open(pathlib.Path(a), "t", segment_bytes)
        general = TopicLog.open(pathlib.Path(b), "t", segment_bytes)
        for i, size in enumerate(sizes):
            msg, ts, id = f"{i}:" + "x" * size, 1700000000.0 + i, f"msg_{i}"
            _lone(one, msg, ts, id)
            general.append(msg, ts, id)
            general.write()
        assert _files(pathlib.Path(a)) == _files(pathlib.Path(b))
        everything = one.read(1, 1000, max_bytes=1 << 30)
        assert everything == general.read(1, 1000, max_bytes=1 << 30)
        assert [r.offset for r in everything] == list(range(1, len(sizes) + 1))
        assert one.read_cached(1, 1000) == general.read_cached(1, 1000)
        assert (one.size_bytes, one.segment_count) == (general.size_bytes, general.segment_count)
        for offset in (1, len(sizes) // 2 + 1, len(sizes)):  # the index finds each record
            assert one.read(offset, 1) == general.read(offset, 1)
        one.close()
        general.close()
        reopened = TopicLog.open(pathlib.Path(a), "t", segment_bytes)
        assert reopened.last_offset == len(sizes)
        reopened.close()


def test_it_leaves_a_first_record_a_pending_run_and_a_roll_to_append(open_log: OpenLog) -> None:
    log = open_log(segment_bytes=400)
    assert log.write_one("a", 1.0, "msg_a") is None, "no segment file yet"
    fill(log, 1)
    log.append("pending", 1.0, "msg_p")
    assert log.write_one("b", 1.0, "msg_b") is None, "it would jump the pending record"
    log.write()
    assert log.write_one("y" * 390, 1.0, "msg_y") is None, "it would start a segment"
    assert log.last_offset == 2 and log.written_offset == 2 and not log.has_pending


def test_the_record_it_returns_is_in_the_file_the_tail_and_the_offsets(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    log = open_log()
    fill(log, 1)
    [segment] = segment_files(tmp_path / "topics" / "t")
    record = log.write_one("hello", 2.0, "msg_h")
    assert b"hello" in segment.read_bytes()
    assert record == Record(2, "msg_h", 2.0, "hello")
    assert log.last_offset == log.written_offset == 2
    assert log.read(2, 1) == [record] and log.read_cached(2, 1) == [record]


def test_written_runs_once_the_file_has_the_record_and_not_for_one_it_declines(
    open_log: OpenLog, tmp_path: pathlib.Path
) -> None:
    # The broker answers a lone publish from ``written``: the answer must follow the bytes.
    log = open_log(segment_bytes=400)
    fill(log, 1)
    [segment] = segment_files(tmp_path / "topics" / "t")
    seen: list[bool] = []
    log.write_one("hello", 2.0, "msg_h", lambda: seen.append(b"hello" in segment.read_bytes()))
    assert seen == [True]
    assert log.write_one("y" * 390, 2.0, "msg_y", lambda: seen.append(False)) is None
    assert seen == [True], "a record it leaves to append is not written yet"


def test_a_failing_written_still_leaves_the_record_accounted_for(open_log: OpenLog) -> None:
    log = open_log()
    fill(log, 1)

    def fails() -> None:
        raise ConnectionResetError("the reply could not be sent")

    with pytest.raises(ConnectionResetError):
        log.write_one("kept", 2.0, "msg_k", fails)
    assert log.last_offset == log.written_offset == 2
    assert log.read(2, 1)[0].msg == "kept" and log.read_cached(2, 1)[0].msg == "kept"
    assert log.write_one("next", 3.0, "msg_n") is not None
    assert [r.msg for r in log.read(2, 5)] == ["kept", "next"]
