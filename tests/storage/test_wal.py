"""The shared write-ahead log: one write per commit for every topic, segments written later,
and what a crash, a torn tail or a damaged line in it costs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from linemq.broker.storage import checkpoint
from linemq.broker.storage.checkpoint import FLUSH_BYTES
from linemq.broker.storage.damage import LOST_OFFSETS, RECORD, DamageReport
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.store import FileStore
from linemq.broker.storage.wal import WAL_DIR, list_wal, wal_path
from tests.conftest import BrokerProcess
from tests.wire import Wire

TOPICS = 1000


def wal_files(data: Path) -> list[Path]:
    return [p for _, p in list_wal(data / WAL_DIR)]


def opened(data: Path, damage: DamageReport | None = None) -> FileStore:
    store = FileStore(data, damage=damage)
    store.open()
    return store


async def publish(store: FileStore, batch: dict[str, list[str]]) -> None:
    n = sum(map(len, batch.values()))
    ticket = store.append_batch(batch, 1.0, [f"id{i}" for i in range(n)])
    store.commit()
    await ticket


async def texts(store: FileStore, topic: str) -> list[str]:
    return [r.msg for r in await store.read(topic, 1, 10_000)]


def segment_text(data: Path, topic: str) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((data / "topics" / topic).glob("*.log")))


def crash(store: FileStore) -> None:
    """What a kill -9 leaves: the files as written, nothing closed, nothing flushed."""
    store.damage = DamageReport()  # the abandoned store keeps its handles; nothing else runs


async def test_records_only_in_the_log_are_served_then_replayed_into_segments(
    tmp_path: Path,
) -> None:
    store = opened(tmp_path)
    await publish(store, {f"t{i}": [f"a{i}"] for i in range(20)})  # new topics: segments now
    await publish(store, {f"t{i}": [f"b{i}"] for i in range(20)})
    assert b"b0" not in segment_text(tmp_path, "t0"), "no segment written per commit"
    assert [r.msg for r in store.get("t3").read_cached(1, 10)] == ["a3", "b3"]  # type: ignore[union-attr]
    crash(store)
    again = opened(tmp_path)
    for i in range(20):
        assert await texts(again, f"t{i}") == [f"a{i}", f"b{i}"]
    assert wal_files(tmp_path) == [wal_path(tmp_path / WAL_DIR, 2)], "replayed, then dropped"
    await publish(again, {"t0": ["c0"]})
    assert [r.offset for r in await again.read("t0", 1, 10)] == [1, 2, 3]
    again.close()


async def test_a_clean_close_leaves_segments_only_and_a_store_without_the_log_reads_them(
    tmp_path: Path,
) -> None:
    store = opened(tmp_path)
    await publish(store, {"a": ["1", "2"], "b": ["3"]})
    store.close()
    assert wal_files(tmp_path) == []
    old = FileStore(tmp_path, wal=False)  # writes as the broker before the log did
    old.open()
    assert await texts(old, "a") == ["1", "2"] and await texts(old, "b") == ["3"]
    await publish(old, {"a": ["4"]})
    old.close()
    assert await texts(opened(tmp_path), "a") == ["1", "2", "4"]


async def test_a_topic_past_the_flush_threshold_writes_its_segment_and_reads_from_disk(
    tmp_path: Path,
) -> None:
    store = opened(tmp_path)
    big = "x" * 1000
    for n in range(FLUSH_BYTES // 1000 + 5):  # one record a commit: each goes to the log
        await publish(store, {"busy": [f"{n}{big}"], "quiet": [f"q{n}"]})
    assert b'"msg":"%dx' % (FLUSH_BYTES // 1100) in segment_text(tmp_path, "busy")
    assert b"q1" not in segment_text(tmp_path, "quiet")
    assert len(await store.read_last("quiet", 3)) == 3  # a read from disk writes it first
    records = await store.offset_at("quiet", 0.0)
    assert records == 1
    store.close()


async def test_a_checkpoint_writes_every_topic_then_drops_the_log_files_it_covers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.0)  # after every commit
    monkeypatch.setattr(checkpoint, "CHECKPOINT_FLUSHES", 2)  # two topics a commit
    store = opened(tmp_path)
    topics = "abcde"
    await publish(store, {t: ["0"] for t in topics})
    await publish(store, {t: ["1"] for t in topics})  # logged; a checkpoint begins
    first = wal_files(tmp_path)[0]
    assert sum(b'"msg":"1"' in segment_text(tmp_path, t) for t in topics) == 2
    for n in range(2, 5):
        await publish(store, {"a": [str(n)]})
    assert all(b'"msg":"1"' in segment_text(tmp_path, t) for t in topics)
    deadline = time.monotonic() + 10
    while first.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not first.exists(), "dropped once the segments were synced"
    crash(store)
    again = opened(tmp_path)
    assert await texts(again, "a") == ["0", "1", "2", "3", "4"]
    for t in "bcde":
        assert await texts(again, t) == ["0", "1"]
    again.close()


async def test_a_torn_log_tail_is_cut_and_what_is_whole_before_it_is_kept(
    tmp_path: Path,
) -> None:
    store = opened(tmp_path)
    await publish(store, {"a": ["1", "2"], "b": ["3"]})
    await publish(store, {"a": ["4", "5"], "b": ["6"]})
    crash(store)
    path = wal_files(tmp_path)[-1]
    data = path.read_bytes()
    last_frame = data.rindex(b'{"topic":"b"')
    path.write_bytes(data[: last_frame + 30])  # the last frame's header torn
    again = opened(tmp_path)
    assert await texts(again, "a") == ["1", "2", "4", "5"]
    assert await texts(again, "b") == ["3"]
    again.close()


async def test_a_damaged_log_record_costs_that_record_and_its_offset_is_never_reused(
    tmp_path: Path,
) -> None:
    store = opened(tmp_path)
    await publish(store, {"a": ["zero"], "b": ["w"]})
    await publish(store, {"a": ["one", "two", "three"], "b": ["x"]})
    crash(store)
    path = wal_files(tmp_path)[-1]
    data = path.read_bytes()
    path.write_bytes(data.replace(b'"msg":"two"', b'"msg":"tw0"'))
    damage = DamageReport()
    again = opened(tmp_path, damage)
    got = [(r.offset, r.msg) for r in await again.read("a", 1, 10)]
    assert got == [(1, "zero"), (2, "one"), (4, "three")]
    assert await texts(again, "b") == ["w", "x"]
    found = [d for d in damage.recent() if d.kind == RECORD]
    assert [(d.topic, d.first, d.last, d.path) for d in found] == [("a", 3, 3, str(path))]
    await publish(again, {"a": ["four"]})
    assert (await again.read("a", 5, 1))[0].msg == "four"
    again.close()


async def test_a_damaged_last_record_of_a_topic_still_moves_its_offsets_on(
    tmp_path: Path,
) -> None:
    store = opened(tmp_path)
    await publish(store, {"a": ["zero"]})
    await publish(store, {"a": ["one", "two"]})
    crash(store)
    path = wal_files(tmp_path)[-1]
    path.write_bytes(path.read_bytes().replace(b'"msg":"two"', b'"msg":"tw0"'))
    damage = DamageReport()
    again = opened(tmp_path, damage)
    assert again.last_offset("a") == 3
    assert {d.kind for d in damage.recent()} == {RECORD, LOST_OFFSETS}
    await publish(again, {"a": ["three"]})
    got = [(r.offset, r.msg) for r in await again.read("a", 1, 10)]
    assert got == [(1, "zero"), (2, "one"), (4, "three")]
    again.close()


async def test_a_damaged_frame_header_costs_its_frame_only(tmp_path: Path) -> None:
    store = opened(tmp_path)
    await publish(store, {"a": ["0"], "b": ["0"], "c": ["0"]})
    await publish(store, {"a": ["1"], "b": ["2"], "c": ["3"]})
    crash(store)
    path = wal_files(tmp_path)[-1]
    path.write_bytes(path.read_bytes().replace(b'{"topic":"b"', b'{"topic":"B"'))
    damage = DamageReport()
    again = opened(tmp_path, damage)
    assert await texts(again, "a") == ["0", "1"] and await texts(again, "c") == ["0", "3"]
    assert await texts(again, "b") == ["0"]  # its frame is lost, and reported
    assert [d.kind for d in damage.recent()] == [RECORD]
    again.close()


async def test_a_later_log_format_is_refused_not_misread(tmp_path: Path) -> None:
    store = opened(tmp_path)
    await publish(store, {"a": ["1"]})
    crash(store)
    path = wal_files(tmp_path)[-1]
    from linemq.broker.storage.checksum import seal

    rest = path.read_bytes().split(b"\n", 1)[1]
    path.write_bytes(seal(b'{"linemq_wal":9,"seq":1}') + rest)
    with pytest.raises(StorageError, match="format 9"):
        opened(tmp_path)


async def test_purged_records_do_not_come_back_from_the_log(tmp_path: Path) -> None:
    store = opened(tmp_path)
    await publish(store, {"t.dlq": ["0"]})
    await publish(store, {"t.dlq": ["1", "2", "3"]})
    assert await store.purge("t.dlq") == 4
    crash(store)
    again = opened(tmp_path)
    assert await texts(again, "t.dlq") == []
    assert again.last_offset("t.dlq") == 4
    again.close()


async def test_deleted_topics_do_not_come_back_from_the_log(tmp_path: Path) -> None:
    store = opened(tmp_path)
    await publish(store, {"gone": ["0"], "kept": ["0"]})
    await publish(store, {"gone": ["1", "2"], "kept": ["3"]})
    await store.delete_topics(["gone"])
    crash(store)
    again = opened(tmp_path)
    assert again.get("gone") is None and again.topics() == ["kept"]
    assert await texts(again, "kept") == ["0", "3"]
    await publish(again, {"gone": ["new"]})
    assert [r.offset for r in await again.read("gone", 1, 10)] == [4]
    again.close()


@pytest.mark.timeout(120)
async def test_acked_publishes_to_a_thousand_topics_survive_kill9_before_any_checkpoint(
    broker_process: type[BrokerProcess], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    proc = broker_process(data_dir=data)
    w = await Wire.open(proc.port)
    for rnd in ("first", "second"):  # the first makes the topics, the second is only logged
        await w.send("".join(f"PUB t{i} {rnd}-{i}\n" for i in range(TOPICS)))
        assert await w.lines(TOPICS, timeout=60) == ["OK published"] * TOPICS
    proc.kill9()
    in_segments = [i for i in range(TOPICS) if b"second" in segment_text(data, f"t{i}")]
    assert len(in_segments) < TOPICS, "the second round was in the log only"
    proc = broker_process(data_dir=data)
    events = [e for e in proc.events() if e.get("event") == "wal_replayed"]
    assert events and events[0]["topics"] >= TOPICS - len(in_segments)
    w = await Wire.open(proc.port)
    for i in range(TOPICS):
        await w.send(f"HISTORY t{i} 10\n")
        lines = await w.until("OK history end")
        assert [line.split(" ", 5)[5] for line in lines[:-1]] == [f"first-{i}", f"second-{i}"]
    await w.send("STATS\n")
    assert f"topics={TOPICS}" in (await w.until("OK stats end"))[0]
    proc.kill9()


@pytest.mark.timeout(120)
async def test_a_deleted_topic_does_not_come_back_after_kill9(
    broker_process: type[BrokerProcess], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    proc = broker_process(data_dir=data)
    w = await Wire.open(proc.port)
    await w.send("PUB doomed a\nPUB doomed b\nPUB stays c\n")
    assert await w.lines(3) == ["OK published"] * 3
    assert await w.cmd("DELETE doomed") == "OK deleted doomed"
    proc.kill9()
    proc = broker_process(data_dir=data)
    w = await Wire.open(proc.port)
    await w.send("STATS\n")
    stats = (await w.until("OK stats end"))[0]
    assert "topics=1" in stats
    assert await w.cmd("PUB doomed again") == "OK published"
    await w.send("HISTORY doomed 10\n")
    lines = await w.until("OK history end")
    assert [line.split()[3] for line in lines[:-1]] == ["3"]  # offsets go on past the old ones
    proc.kill9()
