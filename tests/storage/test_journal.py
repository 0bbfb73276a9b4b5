from __future__ import annotations

import asyncio
import errno
import os
import pathlib
import time

import pytest

from linemq.broker.storage import Journal, StorageError
from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.journal import OpenFiles


def test_append_write_replay_round_trip(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "groups" / "g1" / "state.jsonl"  # parents do not exist yet
    j = Journal(path)
    assert j.replay() == []
    j.append({"op": "ack", "offset": 3})
    j.append({"op": "nack", "offset": 4, "why": "x\ny"})
    assert j.has_pending and j.size == 0
    j.write()
    assert not j.has_pending and j.size == path.stat().st_size
    j.sync()
    j.close()
    again = Journal(path)
    assert again.replay() == [
        {"op": "ack", "offset": 3},
        {"op": "nack", "offset": 4, "why": "x\ny"},
    ]
    again.append({"op": "ack", "offset": 5})
    again.close()
    assert Journal(path).replay()[-1] == {"op": "ack", "offset": 5}


@pytest.mark.parametrize("debris", [b'{"op":"ack","off', b"\0" * 512, b"\xff"])
def test_torn_tail_is_truncated(tmp_path: pathlib.Path, debris: bytes) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    j.append({"n": 1})
    j.close()
    good = path.read_bytes()
    with path.open("ab") as f:
        f.write(debris)
    j = Journal(path)
    assert j.replay() == [{"n": 1}]
    assert j.damaged == 0 and j.size == path.stat().st_size == len(good)
    j.append({"n": 2})
    j.close()
    assert Journal(path).replay() == [{"n": 1}, {"n": 2}]
    assert path.read_bytes().startswith(good)


@pytest.mark.parametrize("debris", [b"[1,2]\n", b'{"op":"ack"}\nnot json\n', b"\0" * 100 + b"\n"])
def test_damaged_lines_cost_only_themselves(tmp_path: pathlib.Path, debris: bytes) -> None:
    """A whole line that fails its check is reported and skipped; the lines after it stay."""
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    j.append({"n": 1})
    j.close()
    with path.open("ab") as f:
        f.write(debris)
    j = Journal(path)
    j.append({"n": 2})
    j.close()
    report = DamageReport()
    j = Journal(path, damage=report)
    assert j.replay() == [{"n": 1}, {"n": 2}]
    assert j.damaged == debris.count(b"\n") and j.needs_rewrite
    assert report.counts()["journal_line"] == j.damaged
    j.rewrite_now(j.replay())
    again = Journal(path, damage=report)
    assert again.replay() == [{"n": 1}, {"n": 2}] and not again.needs_rewrite


def test_every_line_is_checked(tmp_path: pathlib.Path) -> None:
    """A flipped digit that still parses is caught by the line's CRC32C."""
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    j.append({"o": 1234})
    j.append({"o": 1235})
    j.close()
    data = path.read_bytes()
    assert data.startswith(b'{"journal":2,"c":')
    path.write_bytes(data.replace(b'{"o":1234,', b'{"o":9234,'))
    j = Journal(path)
    assert j.replay() == [{"o": 1235}] and j.damaged == 1


def test_a_journal_of_the_earlier_format_replays(tmp_path: pathlib.Path) -> None:
    """Format 1 (plain JSON lines, no header) is read as before and told apart explicitly."""
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2}\n')
    j = Journal(path)
    assert j.replay() == [{"n": 1}, {"n": 2}]
    assert j.version == 1 and j.needs_rewrite and j.damaged == 0
    j.rewrite_now([{"n": 1}, {"n": 2}])
    j.append({"n": 3})
    j.close()
    j = Journal(path)
    assert j.replay() == [{"n": 1}, {"n": 2}, {"n": 3}] and j.version == 2


def test_open_journals_are_bounded(tmp_path: pathlib.Path) -> None:
    """Past the limit the least recently written journal closes; a write reopens it."""

    def open_fds() -> int:
        return len(os.listdir(f"/proc/{os.getpid()}/fd"))

    files = OpenFiles(3)
    before = open_fds()
    journals = [Journal(tmp_path / f"{i}.journal", files=files) for i in range(10)]
    for round_ in range(3):
        for i, j in enumerate(journals):
            j.append({"i": i, "round": round_})
            j.write()
            assert len(files) <= 3 and open_fds() - before <= 3
    for j in journals:
        j.sync()  # an fsync after the descriptor was closed opens the file for it
        j.close()
    assert open_fds() == before
    for i in range(10):
        assert [e["round"] for e in Journal(tmp_path / f"{i}.journal").replay()] == [0, 1, 2]


@pytest.mark.parametrize("sync_each_write", [True, False])
async def test_rewrite_compacts_and_keeps_what_is_written_meanwhile(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, sync_each_write: bool
) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path, sync_each_write=sync_each_write)
    j.replay()
    for i in range(100):
        j.append({"offset": i})
    j.write()
    big = j.size
    j.append({"offset": 100})  # buffered: written to the old file, covered by the snapshot
    real_fsync = os.fsync
    fsyncs: list[int] = []

    def slow_fsync(fd: int) -> None:
        # While the snapshot is being fsynced the journal is still written to.
        if not fsyncs:
            j.append({"offset": 101})
            j.write()
        fsyncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    assert await j.rewrite_off_loop([{"snapshot": True, "offset": 100}])
    # The lines copied from the old file are fsynced with the rewrite only when every
    # write is (--fsync always); otherwise the journal's next sync covers them.
    assert len(fsyncs) == (2 if sync_each_write else 1)
    j.sync()  # the directory entry, and the new file if the rewrite did not sync it
    assert len(fsyncs) == 3
    monkeypatch.undo()
    assert j.size < big and j.size == path.stat().st_size
    assert not path.with_name("j.jsonl.tmp").exists()
    j.append({"offset": 102})
    j.close()
    assert Journal(path).replay() == [
        {"snapshot": True, "offset": 100},
        {"offset": 101},
        {"offset": 102},
    ]


async def test_writes_never_wait_for_a_rewrite_unless_each_write_is_synced(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --fsync always, the rewrite's last step makes no write wait (no seal)."""
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:  # a disk busy with writeback
        time.sleep(0.02)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    j = Journal(tmp_path / "j.jsonl", sync_each_write=False)
    j.replay()
    j.append({"n": 1})
    rewrite = asyncio.create_task(j.rewrite_off_loop([{"snapshot": True}]))
    refused: list[bool] = []
    while not rewrite.done():  # as the commit tick does, until the new file is in place
        j.append({"n": len(refused)})
        refused.append(not j.write())
        await asyncio.sleep(0)
    assert await rewrite
    assert refused and not any(refused)


async def test_rewrite_of_a_closed_journal_leaves_the_file_alone(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    j.replay()
    j.append({"n": 1})
    j.write()
    rewrite = asyncio.create_task(j.rewrite_off_loop([{"snapshot": True}]))
    await asyncio.sleep(0)  # the snapshot is being written in a thread
    j.close()
    assert not await rewrite
    assert Journal(path).replay() == [{"n": 1}]
    assert not path.with_name("j.jsonl.tmp").exists()


def test_failed_write_truncates_back(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    j.append({"n": 1})
    j.write()
    real = os.write

    def half_then_enospc(fd: int, data: bytes | memoryview) -> int:
        if len(data) > 20:
            return real(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    j.append({"n": 2, "pad": "x" * 50})
    with pytest.raises(StorageError):
        j.write()
    monkeypatch.undo()
    assert not j.has_pending and path.stat().st_size == j.size
    j.append({"n": 3})
    j.close()
    assert Journal(path).replay() == [{"n": 1}, {"n": 3}]


async def test_a_deleted_journal_never_comes_back(tmp_path: pathlib.Path) -> None:
    """A group's late task appending after DELETE must not create the file again, and a
    rewrite under way gives up and leaves nothing behind."""
    path = tmp_path / "g.journal"
    files = OpenFiles(4)
    j = Journal(path, files=files)
    j.append({"e": "start", "o": 1})
    assert j.write()
    j.sync()
    rewrite = asyncio.ensure_future(j.rewrite_off_loop([{"e": "floor", "o": 1}]))
    j.append({"e": "a", "o": 1})
    j.delete()
    assert not path.exists() and len(files) == 0
    assert await rewrite is False
    j.append({"e": "g", "o": 2})  # late
    assert j.write()
    j.sync()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
