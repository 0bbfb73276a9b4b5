from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from storage_helpers import OpenLog, fill, segment_files

from linemq.broker.storage.records import StorageError
from linemq.broker.storage.segment import decode_record

REPO = pathlib.Path(__file__).resolve().parents[2]


def _fail_writes(monkeypatch: pytest.MonkeyPatch, after_calls: int = 0) -> None:
    """Let ``after_calls`` writes through, then write half of the next one and raise ENOSPC."""
    real = os.write
    calls = 0

    def flaky(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls <= after_calls:
            return real(fd, data)
        if calls == after_calls + 1 and len(data) > 1:
            return real(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", flaky)


def test_failed_write_rolls_back_everything(
    open_log: OpenLog, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=100_000)
    fill(log, 10)
    seg = segment_files(tmp_path / "topics" / "t")[-1]
    size, idx_size = seg.stat().st_size, seg.with_suffix(".idx").stat().st_size
    for i in range(5):
        log.append("x" * 2000, 1.0, f"msg_f{i}")
    _fail_writes(monkeypatch)
    with pytest.raises(StorageError, match="No space"):
        log.write()
    monkeypatch.undo()
    assert seg.stat().st_size == size and seg.with_suffix(".idx").stat().st_size == idx_size
    assert log.last_offset == 10 and not log.has_pending
    assert [r.offset for r in log.read(1, 100)] == list(range(1, 11))
    assert log.read_cached(11, 5) == []
    fill(log, 2)
    assert [r.offset for r in log.read(9, 100)] == [9, 10, 11, 12]
    log.close()
    assert open_log(segment_bytes=100_000).last_offset == 12


def test_failed_index_write_rolls_back_log_too(
    open_log: OpenLog, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=100_000)
    fill(log, 3)
    seg = segment_files(tmp_path / "topics" / "t")[-1]
    size = seg.stat().st_size
    for i in range(5):
        log.append("y" * 2000, 1.0, f"msg_f{i}")  # > 4 KiB: the batch carries index entries
    _fail_writes(monkeypatch, after_calls=1)
    with pytest.raises(StorageError):
        log.write()
    monkeypatch.undo()
    assert seg.stat().st_size == size and log.last_offset == 3
    fill(log, 1)
    assert log.read(4, 1)[0].msg == "m4"


def test_failed_write_into_new_segment_removes_it(
    open_log: OpenLog, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=1000)
    fill(log, 5)
    before = segment_files(tmp_path / "topics" / "t", "")
    for i in range(40):  # spills over into fresh segments
        log.append(f"z{i}", 1.0, f"msg_z{i}")
    _fail_writes(monkeypatch, after_calls=2)  # first segment's log + index succeed
    with pytest.raises(StorageError):
        log.write()
    monkeypatch.undo()
    written = log.last_offset
    assert 5 < written < 45
    files = segment_files(tmp_path / "topics" / "t", "")
    assert len(files) == len(before)
    fill(log, 40)
    assert [r.offset for r in log.read(1, 1000)] == list(range(1, written + 41))
    log.close()
    assert open_log(segment_bytes=1000).last_offset == written + 40


_EFBIG_CHILD = textwrap.dedent(
    """
    import pathlib, resource, signal, sys
    from linemq.broker.storage import FileStore, StorageError

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
    store = FileStore(pathlib.Path(sys.argv[1]), segment_bytes=1 << 30)
    store.open()
    log = store.topic("big")
    i = 0
    while True:
        for _ in range(7):
            i += 1
            log.append("payload %d " % i + "p" * 300, 1.0, "msg_%d" % i)
        try:
            log.write()
        except StorageError as exc:
            print("RESULT", log.last_offset, exc, flush=True)
            break
    """
)


def test_efbig_for_real_leaves_only_whole_records(tmp_path: pathlib.Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _EFBIG_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    [result] = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    _, last, reason = result.split(" ", 2)
    assert "too large" in reason.lower()
    seg = tmp_path / "topics" / "big" / f"{1:020d}.log"
    data = seg.read_bytes()
    assert data.endswith(b"\n") and len(data) <= 150_000
    lines = data.split(b"\n")[1:-1]
    assert [decode_record(line).offset for line in lines] == list(range(1, int(last) + 1))  # type: ignore[union-attr]

    from linemq.broker.storage import FileStore

    store = FileStore(tmp_path)
    store.open()
    log = store.get("big")
    assert log is not None and log.last_offset == int(last)
    assert seg.stat().st_size == len(data)  # nothing to repair
    log.append("after", 1.0, "msg_after")
    log.write()
    assert log.read(int(last), 5)[-1].msg == "after"
    store.close()


def test_a_failed_lone_write_is_undone(
    open_log: OpenLog, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=100_000)
    fill(log, 3)
    seg = segment_files(tmp_path / "topics" / "t")[-1]
    size = seg.stat().st_size
    _fail_writes(monkeypatch)
    with pytest.raises(StorageError, match="No space"):
        log.write_one("z" * 100, 1.0, "msg_z")
    monkeypatch.undo()
    assert seg.stat().st_size == size
    assert log.last_offset == log.written_offset == 3
    after = log.write_one("after", 1.0, "msg_after")
    assert after is not None and after.offset == 4
    assert [r.msg for r in log.read(3, 10)] == ["m3", "after"]


def test_a_failed_lone_index_write_takes_the_log_line_back_too(
    open_log: OpenLog, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(segment_bytes=100_000)
    fill(log, 1)
    for i in range(2):  # 5 KiB past the last index entry: the next record gets one
        assert log.write_one("w" * 2500, 1.0, f"msg_w{i}") is not None
    seg = segment_files(tmp_path / "topics" / "t")[-1]
    size, idx_size = seg.stat().st_size, seg.with_suffix(".idx").stat().st_size
    _fail_writes(monkeypatch, after_calls=1)  # the log line is written, its index entry not
    with pytest.raises(StorageError):
        log.write_one("indexed", 1.0, "msg_i")
    monkeypatch.undo()
    assert seg.stat().st_size == size and seg.with_suffix(".idx").stat().st_size == idx_size
    assert log.last_offset == 3
    assert log.write_one("indexed", 1.0, "msg_i") is not None
    log.close()
    reopened = open_log(segment_bytes=100_000)
    assert [r.msg for r in reopened.read(3, 10)][1:] == ["indexed"]
    assert reopened.read(4, 1)[0].id == "msg_i"


def test_short_writes_are_continued_until_every_byte_is_written(
    open_log: OpenLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write

    def stingy(fd: int, data: bytes | memoryview) -> int:
        return real(fd, bytes(data[:7]))  # as a write crossing RLIMIT_FSIZE can be

    log = open_log(segment_bytes=100_000)
    fill(log, 1)
    monkeypatch.setattr(os, "write", stingy)
    assert log.write_one("lone " * 20, 1.0, "msg_lone") is not None
    log.append_many(["run a", "run b"], 2.0, ["msg_a", "msg_b"])
    log.write()
    monkeypatch.undo()
    log.close()
    reopened = open_log(segment_bytes=100_000)
    assert [r.msg for r in reopened.read(2, 10)] == ["lone " * 20, "run a", "run b"]
