"""The engine on its own, without sockets: the commit tick, ids, dedup and durability waits.

A test plays the server's part: a ``Publisher`` stands for a connection and
``Replies`` records what the tick releases.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from linemq.broker.config import Config
from linemq.broker.engine import durability
from linemq.broker.engine.engine import Engine
from linemq.broker.engine.pub_batch import PubBatch
from linemq.broker.server.deliveries import ENCODER
from linemq.broker.storage.log_store import Commit
from linemq.broker.storage.records import Meta, StorageError
from linemq.broker.storage.ticket import Ticket

DISK_FULL = "No space left on device"


class Publisher:
    """A connection as the engine sees it."""

    def __init__(self) -> None:
        self.holds_replies = False
        self.answered = 0

    def published(self) -> None:
        self.answered += 1


class Replies:
    """The server's side of the tick: nothing held, releases recorded."""

    def __init__(self) -> None:
        self.released: list[int] = []

    def pending(self) -> bool:
        return False

    def release(self, durable_gen: int) -> None:
        self.released.append(durable_gen)


class Waiter:
    def __init__(self) -> None:
        self.gen: int | None = None
        self.error: StorageError | None = None

    def written(self, gen: int) -> None:
        self.gen = gen

    def failed(self, error: StorageError) -> None:
        self.error = error


class HeldFsync:
    """``--fsync always`` with the fsync held until ``release``."""

    def __init__(self) -> None:
        self.gate = threading.Event()

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def held_fsync(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldFsync]:
    held = HeldFsync()
    real = durability._sync_all

    def sync(files: list[durability.Syncable]) -> None:
        held.gate.wait(5)
        real(files)

    monkeypatch.setattr(durability, "_sync_all", sync)
    yield held
    held.release()


class Opened:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.engines: list[Engine] = []

    async def __call__(self, **options: Any) -> Engine:
        config = Config(port=0, data_dir=self.tmp_path / "data", fsync_interval_ms=50, **options)
        engine = Engine(config, Replies(), ENCODER)
        await engine.open(asyncio.get_running_loop())
        self.engines.append(engine)
        return engine


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[Opened]:
    made = Opened(tmp_path)
    yield made
    for engine in made.engines:
        engine.stop_retention()
        await engine.write_all()
        engine.close()


async def a_tick() -> None:
    """Let the tick the engine scheduled run."""
    for _ in range(3):
        await asyncio.sleep(0)


def batch(*pubs: tuple[str, str]) -> PubBatch:
    made = PubBatch()
    for topic, msg in pubs:
        made.add(topic, msg)
    return made


def counting_commits(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[Commit]:
    commits: list[Commit] = []
    real = engine.store.commit

    def commit() -> Commit:
        done = real()
        if done.written or done.failed:
            commits.append(done)
        return done

    monkeypatch.setattr(engine.store, "commit", commit)
    return commits


def failing_writes(engine: Engine, topic: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every write of ``topic``'s log fails as a full disk does."""
    topic_log = engine.store.topic(topic)

    def write(*args: object) -> bool:
        raise StorageError(DISK_FULL)

    monkeypatch.setattr(topic_log, "write", write)


async def test_one_tick_commits_every_publish_of_every_connection_and_topic(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await opened(fsync="never")
    commits = counting_commits(engine, monkeypatch)
    first, second = Publisher(), Publisher()
    one = engine.publish_batch(first, batch(("a", "a1"), ("b", "b1"), ("a", "a2")))
    two = engine.publish_batch(second, batch(("c", "c1"), ("b", "b2")))
    assert isinstance(one, Ticket) and one is two and not one.done()
    await a_tick()
    assert one.done() and one.errors == {}
    assert len(commits) == 1
    assert {t: [r.msg for r in rs] for t, rs in commits[0].written.items()} == {
        "a": ["a1", "a2"],
        "b": ["b1", "b2"],
        "c": ["c1"],
    }
    for topic, msgs in {"a": ["a1", "a2"], "b": ["b1", "b2"], "c": ["c1"]}.items():
        records = await engine.store.read(topic, 1, 10)
        assert [(r.offset, r.msg) for r in records] == list(enumerate(msgs, start=1))
    assert engine.published == {"a": 2, "b": 2, "c": 1}
    assert first.answered == second.answered == 0  # answered by the ticket, not at once


async def test_a_lone_publish_in_an_idle_iteration_is_answered_before_the_tick(
    opened: Opened,
) -> None:
    engine = await opened(fsync="never")
    publisher = Publisher()
    engine.publish_batch(publisher, batch(("a", "first")))  # makes the topic: via the tick
    await a_tick()
    assert engine.publish_batch(publisher, batch(("a", "second"))) is None
    assert publisher.answered == 1
    assert engine.published == {"a": 2}


async def test_ids_increase_with_offsets_across_ticks_and_topics(opened: Opened) -> None:
    engine = await opened(fsync="never")
    publisher = Publisher()
    for n in range(5):
        engine.publish_batch(publisher, batch(*[("a", f"a{n}.{i}") for i in range(3)]))
        engine.publish_batch(publisher, batch(("a", f"a{n}.x"), ("b", f"b{n}")))
        await a_tick()
    records = await engine.store.read("a", 1, 100) + await engine.store.read("b", 1, 100)
    id_of = {r.msg: r.id for r in records}
    sent = [m for n in range(5) for m in [f"a{n}.0", f"a{n}.1", f"a{n}.2", f"a{n}.x", f"b{n}"]]
    ids = [id_of[m] for m in sent]
    assert len(set(ids)) == len(ids) == 25
    stamps = [int(i.split("_")[1]) for i in ids]
    counters = [int(i.split("_")[2], 16) for i in ids]
    assert stamps == sorted(stamps)
    assert all((b - a) % 2**32 == 1 for a, b in itertools.pairwise(counters))  # wraps too
    by_offset = [r.id for r in sorted(records[: len(records) - 5], key=lambda r: r.offset)]
    assert by_offset == [id_of[m] for m in sent if m.startswith("a")]


async def test_a_publisher_id_is_a_duplicate_before_and_after_its_commit(opened: Opened) -> None:
    engine = await opened(fsync="never")
    now = time.time()
    appended = engine.append("t", "once", Meta(pid="p-1"), now)
    seen = engine.duplicate("t", "p-1", now)
    assert seen is appended and not appended.ticket.done()  # answered with the original
    await a_tick()
    (record,) = await appended
    assert record.offset == 1
    assert engine.duplicate("t", "p-1", time.time()) is appended
    assert engine.duplicate("t", "p-2", time.time()) is None
    assert [r.msg for r in await engine.store.read("t", 1, 10)] == ["once"]


async def test_a_publisher_id_whose_commit_failed_is_not_a_duplicate(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await opened(fsync="never")
    failing_writes(engine, "t", monkeypatch)
    appended = engine.append("t", "lost", Meta(pid="p-1"), time.time())
    await a_tick()
    with pytest.raises(StorageError, match=DISK_FULL):
        await appended
    assert engine.duplicate("t", "p-1", time.time()) is None  # a retry is stored


async def test_a_failed_commit_answers_with_the_storage_error_and_others_are_stored(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await opened(fsync="never")
    failing_writes(engine, "full", monkeypatch)
    waits = engine.publish_batch(Publisher(), batch(("full", "x"), ("fine", "y")))
    assert isinstance(waits, Ticket)
    await a_tick()
    assert waits.done()
    assert list(waits.errors) == ["full"] and str(waits.errors["full"]) == DISK_FULL
    assert [r.msg for r in await engine.store.read("fine", 1, 10)] == ["y"]
    assert engine.published == {"fine": 1}


async def test_a_failed_journal_write_tells_its_waiter_the_storage_error(
    opened: Opened,
) -> None:
    engine = await opened(fsync="never")

    class Full:
        def write(self) -> bool:
            raise StorageError(DISK_FULL)

        def sync(self) -> None:
            pass

    class Fine(Full):
        def write(self) -> bool:
            return True

    failed, written = Waiter(), Waiter()
    engine.after_write(Full(), failed)
    engine.after_write(Fine(), written)
    await a_tick()
    assert str(failed.error) == DISK_FULL and failed.gen is None
    assert written.error is None and written.gen is not None
    assert engine.durable_gen >= written.gen


async def test_a_ticket_settles_only_once_its_generation_is_durable(
    opened: Opened, held_fsync: HeldFsync
) -> None:
    engine = await opened(fsync="always")
    publisher = Publisher()
    waits = engine.publish_batch(publisher, batch(("a", "x")))  # no shortcut: replies wait
    assert isinstance(waits, Ticket) and publisher.answered == 0
    committed = engine.committed()
    await a_tick()
    await asyncio.sleep(0.05)  # the write is done; the fsync is held
    assert not waits.done() and not committed.done()
    assert engine.published == {"a": 1}  # written and sent on, not yet durable
    assert engine.durable_gen < engine.gen - 1
    held_fsync.release()
    await asyncio.wait_for(committed, 5)
    await waits
    assert waits.errors == {}
    assert engine.durable_gen >= engine.gen - 1
