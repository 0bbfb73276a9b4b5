"""A whole broker on a store that gives offsets only when a commit settles, as a database
several nodes share does: what a user sees on the wire is the same as on the file store
(PUT replies and duplicates name the offset, dead letters, REPLAY, schedules, SEEK)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linemq.broker.config import Config
from linemq.broker.server.app import Broker
from tests.conftest import FAST, eventually
from tests.later_store import FAILED, LaterStore
from tests.server.groupwire import member, next_msg
from tests.server.test_schedules import FAST_FLOOR, fields, listing, schedule
from tests.server.test_store_answers_later import in_flight
from tests.server.v2wire import read_frame
from tests.wire import Wire

PUBLISHED = re.compile(r"OK published (\d+) (\S+)$")


@pytest.fixture
async def later() -> AsyncIterator[LaterStore]:
    store = LaterStore(at_commit=True)
    yield store
    store.settle_all()


@pytest.fixture
async def broker(tmp_path: Path, later: LaterStore) -> AsyncIterator[Broker]:
    config = Config(port=0, data_dir=tmp_path / "data", **FAST, **FAST_FLOOR)
    started = Broker(config, store=later)
    await started.start()
    yield started
    later.settle_all()
    await started.stop()


@pytest.fixture
async def answering(later: LaterStore) -> AsyncIterator[None]:
    """The store answers each commit soon after it is made, as a database would."""

    async def answer() -> None:
        while True:
            later.settle_all()
            await asyncio.sleep(0.002)

    task = asyncio.create_task(answer())
    yield
    task.cancel()


async def put(w: Wire, topic: str, payload: bytes, *options: str) -> None:
    head = " ".join((f"PUT {topic} {len(payload)}", *options))
    await w.send(head.encode() + b"\n" + payload + b"\n")


async def test_a_put_and_its_repeats_are_answered_with_the_offset_the_store_gave(
    broker: Broker, later: LaterStore
) -> None:
    w = await Wire.open(broker.port)
    await w.send("PUB orders first\n")  # takes offset 1, once the store answers
    await put(w, "orders", b"charge 42", "id=order-42")
    await in_flight(later, 1)
    await put(w, "orders", b"charge 42", "id=order-42")  # a repeat while the first is pending
    await w.send(b"PUT orders 1 id=x\na\nPUT orders 1 id=x\na\n")  # both in one commit
    await in_flight(later, 2)
    assert await w.silent(0.05), "no offset is known before the store answers"
    later.settle_all()
    assert await w.line() == "OK published"
    first, repeat = await w.line(), await w.line()
    m = PUBLISHED.match(first)
    assert m and m.group(1) == "2", first  # the PUB before it took offset 1
    assert repeat == f"OK duplicate 2 {m.group(2)}"
    x, x_again = await w.line(), await w.line()
    assert x.startswith("OK published 3 ") and x_again == "OK duplicate 3 " + x.split()[3]
    await put(w, "orders", b"charge 42", "id=order-42")  # settled: answered at once
    assert await w.line() == f"OK duplicate 2 {m.group(2)}"
    await w.send("HISTORY orders 10\n")
    assert len(await w.until("OK history end")) == 4  # 3 records and the end line


async def test_a_publish_whose_commit_failed_is_retried_as_new(
    broker: Broker, later: LaterStore
) -> None:
    w = await Wire.open(broker.port)
    await put(w, "t", b"a", "id=k")
    await in_flight(later, 1)
    await put(w, "t", b"a", "id=k")  # waits for the first
    await w.send("PUB t other\n")
    await in_flight(later, 2)  # the repeat was read before it
    later.settle(later.sent[0], fail=frozenset({"t"}))
    later.settle_all()
    failed = f"ERR storage unavailable: {FAILED}"
    assert [await w.line() for _ in range(3)] == [failed, failed, "OK published"]
    await put(w, "t", b"a", "id=k")
    await in_flight(later, 1)
    later.settle_all()
    m = PUBLISHED.match(await w.line())
    assert m and m.group(1) == "2", "a new publish, after the one stored meanwhile"
    await w.send("HISTORY t 10\n")
    assert [line.split()[-1] for line in (await w.until("OK history end"))[:-1]] == ["other", "a"]


@pytest.mark.usefixtures("answering")
async def test_dead_letters_replay_and_seek_latest(broker: Broker, later: LaterStore) -> None:
    m = await member(broker.port, "t", "g")
    admin = await Wire.open(broker.port)
    assert await admin.cmd("PUB t one") == "OK published"
    d = await next_msg(m)
    assert (d.offset, d.text) == (1, "one")
    assert await m.cmd(f"TERM {d.id} broken") == "OK terminated"
    await eventually(lambda: (dlq := broker.store.get("t.dlq")) is not None and dlq.written_offset)
    assert await admin.cmd("REPLAY t ALL") == "OK replayed 1"
    again = await next_msg(m)
    assert (again.offset, again.text) == (2, "one")
    await admin.send("DLQ t\n")
    (letter, end) = await admin.until("OK dlq end")
    assert end == "OK dlq end"
    replayed = json.loads(letter.split(" ", 3)[3])["replayed"]
    assert (replayed["offset"], replayed["id"]) == (2, again.id), "journaled with its offset"
    assert await admin.cmd("REPLAY t ALL") == "OK replayed 0"
    assert await m.cmd(f"ACK {again.id}") == "OK ack_received"
    for text in ("two", "three"):
        assert await admin.cmd(f"PUB t {text}") == "OK published"
    late = await member(broker.port, "t", "late")
    assert await admin.cmd("SEEK t late latest") == "OK seek t late 5"
    assert await late.silent(0.1), "latest: nothing stored before"
    assert await admin.cmd("PUB t four") == "OK published"
    got = await next_msg(late)
    assert (got.offset, got.text) == (5, "four")


@pytest.mark.usefixtures("answering")
async def test_a_schedule_fires_and_records_each_firing(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    assert await w.cmd("HELLO 2") == "OK hello 2"
    assert await w.cmd("SUB ticks") == "OK subscribed ticks"
    reply = await schedule(w, "ticks", "beat", b"tick", "every=100ms")
    assert reply.startswith("OK scheduled ticks beat ")
    frames = [await read_frame(w, 2) for _ in range(2)]
    assert [f.offset for f in frames] == [1, 2]
    await eventually(lambda: broker.schedules.jobs[("ticks", "beat")].fired >= 2)
    (line,) = await listing(await Wire.open(broker.port), "ticks")
    assert int(fields(line)["fired"]) >= 2, "a firing is recorded once its offset is known"
    assert broker.schedules.fire_failures == 0
    assert await w.cmd("UNSCHEDULE ticks beat") == "OK unscheduled ticks beat"


@pytest.mark.usefixtures("answering")
async def test_history_after_a_publish_includes_it(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    await w.send("PUB t one\nHISTORY t 10\n")
    assert await w.line() == "OK published"
    assert [line.split()[-1] for line in (await w.until("OK history end"))[:-1]] == ["one"]
