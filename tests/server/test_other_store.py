"""A whole broker on stores other than files: delivery sees topic logs only through the
seam (log_store.Store) and its groups, replays and schedules only through the state seam
(state_store.StateStore), so publishing, groups, acks, fanout, HISTORY, STATUS, CLEAN and
DELETE work on the in-memory stores as they do on files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linemq.broker.config import Config
from linemq.broker.server.app import Broker
from linemq.broker.storage.memory_state import MemoryStateStore
from linemq.broker.storage.memory_store import MemoryStore
from tests.conftest import FAST
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


@pytest.fixture
async def memory_broker(tmp_path: Path) -> AsyncIterator[Broker]:
    config = Config(port=0, data_dir=tmp_path / "data", **FAST)
    broker = Broker(config, store=MemoryStore(), state=MemoryStateStore())
    await broker.start()
    yield broker
    await broker.stop()


async def test_groups_deliver_and_acks_hold_on_a_memory_store(memory_broker: Broker) -> None:
    port = memory_broker.port
    assert isinstance(memory_broker.store, MemoryStore)
    workers = [await member(port, "jobs", "workers") for _ in range(2)]
    fan = await Wire.open(port)
    assert await fan.cmd("SUB jobs") == "OK subscribed jobs"
    pub = await Wire.open(port)
    await pub.send("".join(f"PUB jobs job-{i}\n" for i in range(6)))
    assert await pub.lines(6) == ["OK published"] * 6
    got = [await next_msg(w) for w in workers for _ in range(3)]
    assert sorted(d.offset for d in got) == list(range(1, 7))
    assert [(await next_msg(fan)).text for _ in range(6)] == [f"job-{i}" for i in range(6)]
    for w, ds in ((workers[0], got[:3]), (workers[1], got[3:])):
        await w.send("".join(f"ACK {d.id}\n" for d in ds))
        assert await w.lines(3) == ["OK ack_received"] * 3
    for w in workers:
        assert await w.silent(0.4), "an acked message is not delivered again (ack timeout 0.3 s)"
    await pub.send("GROUPS jobs\n")
    (group, _) = await pub.until("OK groups end")
    assert group.startswith("GROUP jobs workers members=2 inflight=0 waiting=0 lag=0 acked=6")

    await pub.send("HISTORY jobs 3\n")
    lines = await pub.until("OK history end")
    assert [line.split(" ", 5)[5] for line in lines[:-1]] == ["job-3", "job-4", "job-5"]


async def test_unacked_messages_come_back_and_late_members_catch_up(
    memory_broker: Broker,
) -> None:
    port = memory_broker.port
    pub = await Wire.open(port)
    assert await pub.cmd("PUB t before") == "OK published"
    first = await member(port, "t", "g")  # a new group starts at the end of the log
    assert await pub.cmd("PUB t after") == "OK published"
    d = await next_msg(first)
    assert (d.offset, d.text) == (2, "after")
    again = await next_msg(first, timeout=3)  # not acked within 0.3 s: delivered again
    assert (again.offset, again.text) == (2, "after")
    reader = await Wire.open(port)
    assert await reader.cmd("SUB t from=earliest") == "OK subscribed t"
    assert [(await next_msg(reader)).text for _ in range(2)] == ["before", "after"]


async def test_clean_and_delete_go_through_the_store(memory_broker: Broker) -> None:
    port = memory_broker.port
    store = memory_broker.store
    pub = await Wire.open(port)
    await pub.send("".join(f"PUB old {i}\n" for i in range(5)))
    assert await pub.lines(5) == ["OK published"] * 5
    assert await pub.cmd("CLEAN old keep=2") == "OK cleaned 3"
    assert store.first_offset("old") == 4
    assert await pub.cmd("DELETE old") == "OK deleted old"
    assert store.get("old") is None
    assert await pub.cmd("PUB old again") == "OK published"
    assert store.last_offset("old") == 6, "a deleted topic's name goes on"


async def test_a_broker_on_memory_stores_writes_no_files_and_restarts_from_them(
    tmp_path: Path,
) -> None:
    """Groups, wildcard registrations, replays, schedules and publisher ids live in the
    memory state store: nothing lands in the data directory, and a broker started again
    on the same stores goes on where the first one stopped."""
    config = Config(port=0, data_dir=tmp_path / "data", **FAST)
    store, state = MemoryStore(), MemoryStateStore()
    broker = Broker(config, store=store, state=state)
    await broker.start()
    worker = await member(broker.port, "jobs", "workers")
    assert await worker.cmd("SUB jobs.* audit") == "OK subscribed jobs.* in group audit"
    pub = await Wire.open(broker.port)
    await pub.send("PUB jobs one\nPUB jobs two\n")
    assert await pub.lines(2) == ["OK published"] * 2
    first, second = await next_msg(worker), await next_msg(worker)
    assert await worker.cmd(f"ACK {first.id}") == "OK ack_received"
    await pub.send("SCHEDULE jobs tick 5 every=1h\nhello\n")
    assert (await pub.line()).startswith("OK scheduled jobs tick")
    await broker.stop()
    assert state.groups() == [("jobs", "workers")]
    data = tmp_path / "data"
    assert [p for p in data.rglob("*") if p.is_file()] == [], "no journal, marker or schedule"

    again = Broker(config, store=store, state=state)
    await again.start()
    try:
        worker = await member(again.port, "jobs", "workers")
        redelivered = await next_msg(worker)
        assert (redelivered.offset, redelivered.text) == (second.offset, "two")
        assert await worker.silent(0.4), "the acked message is not delivered again"
        pub = await Wire.open(again.port)
        await pub.send("SCHEDULES jobs\n")
        (job, _) = await pub.until("OK schedules end")
        assert "tick" in job
    finally:
        await again.stop()
