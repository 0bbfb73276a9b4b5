"""Dead letters that could not be written, letters of letters, and names with no .dlq."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import linemq.broker.protocol.parser as parser
from linemq.broker.protocol.names import NO_DEAD_LETTER_TOPIC, is_valid_name, is_valid_topic
from linemq.broker.server.app import Broker
from linemq.broker.storage.store import FileStore
from tests.conftest import BrokerFactory, BrokerProcess, eventually
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


@pytest.mark.parametrize("name", ["t.", "a.b.", "x" * 197, "x" * 196 + "."])
async def test_a_topic_with_no_valid_dead_letter_topic_is_refused(
    broker: Broker, name: str
) -> None:
    """``t.`` could not dead-letter (``t..dlq``); nor could a 197-200 character name."""
    assert is_valid_name(name) and not is_valid_name(name + ".dlq")
    w = await Wire.open(broker.port)
    assert await w.cmd(f"PUB {name} m") == f"ERR {NO_DEAD_LETTER_TOPIC}"
    assert await w.cmd(f"SUB {name} g") == f"ERR {NO_DEAD_LETTER_TOPIC}"
    assert await w.cmd(f"SUB {name}") == f"ERR {NO_DEAD_LETTER_TOPIC}"
    await w.send(f"HELLO 2\nPUT {name} 5\nhello\n")
    assert await w.line() == "OK hello 2"
    assert await w.line() == f"ERR {NO_DEAD_LETTER_TOPIC}"
    assert await w.cmd("PUB fine m") == "OK published"  # the payload was not read as commands
    assert broker.store.topics() == ["fine"]


@pytest.mark.parametrize("name", ["t", "a.b", "x" * 196, "x" * 196 + ".dlq", "t.dlq"])
async def test_every_name_that_can_dead_letter_still_works(broker: Broker, name: str) -> None:
    assert is_valid_topic(name)
    w = await Wire.open(broker.port)
    if name.endswith(".dlq"):  # a dead-letter topic: only the broker writes it, all may read
        assert await w.cmd(f"PUB {name} m") == "ERR dead-letter topics are written by the broker"
    else:
        assert await w.cmd(f"PUB {name} m") == "OK published"
    assert await w.cmd(f"SUB {name} g") == f"OK subscribed {name} in group g"


async def test_a_topic_of_an_earlier_release_with_no_dlq_never_drops_the_consumer(
    brokers: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today a dead-lettering NACK on ``t.`` killed the consumer's connection."""
    broker = await brokers.start(max_retries=0)
    monkeypatch.setattr(parser, "is_valid_topic", lambda name: True)  # an earlier release
    m = await member(broker.port, "t.", "g")
    assert await m.cmd("PUB t. poison") == "OK published"
    monkeypatch.undo()
    d = await next_msg(m)
    assert await m.cmd(f"NACK {d.id}") == "OK nack_received"
    assert await m.cmd("PING") == "OK pong"  # still connected
    assert broker.router.groups["t."]["g"].state.count == 1  # waiting, not lost
    assert broker.store.get("t..dlq") is None


async def test_dead_letters_go_one_level_deep(brokers: BrokerFactory) -> None:
    """A ``SUB > g`` group that fails everything grew a 5-byte message into 134 MB."""
    broker = await brokers.start(max_retries=0, ack_timeout=0.05)
    m = await member(broker.port, ">", "g")  # joins t, then t.dlq when it appears
    p = await Wire.open(broker.port)
    assert await p.cmd("PUB t hello") == "OK published"
    await eventually(lambda: broker.store.get("t.dlq") is not None)
    await eventually(lambda: broker.router.groups.get("t.dlq", {}).get("g") is not None)
    group = broker.router.groups["t.dlq"]["g"]
    await eventually(lambda: group.state.dead == 1)  # the letter failed too: kept as it is
    await asyncio.sleep(0.3)  # time for more levels, if there were any
    assert broker.store.topics() == ["t", "t.dlq"]
    dlq = broker.store.get("t.dlq")
    assert dlq is not None and dlq.last_offset == 1
    await m.close()


async def test_a_letter_stays_within_max_message_bytes_and_replays_whole(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_retries=0, max_message_bytes=300)
    m = await member(broker.port, "t", "g")
    text = "x" * 290
    assert await m.cmd(f"PUB t {text}") == "OK published"
    d = await next_msg(m)
    assert await m.cmd(f"NACK {d.id}") == "OK nack_received"
    await eventually(lambda: broker.store.get("t.dlq") is not None)
    dlq = broker.store.get("t.dlq")
    assert dlq is not None
    await eventually(lambda: dlq.written_offset == 1)
    (stored,) = dlq.read(1, 10)
    assert len(stored.msg.encode()) <= 300
    letter = json.loads(stored.msg)
    assert letter["truncated"] is True and letter["msg_bytes"] == 290 and letter["id"] == d.id
    assert await m.cmd("REPLAY t ALL") == "OK replayed 1"
    again = await next_msg(m)
    assert again.text == text and again.id != d.id


def store_letters(data_dir: Path, n: int) -> None:
    """``n`` dead letters of ``t`` as the broker stores them (JSON with the text to replay),
    written into a stopped broker's data dir: clients may not publish to ``.dlq`` topics."""
    store = FileStore(data_dir)
    store.open()
    try:
        dlq = store.topic("t.dlq")
        for i in range(n):
            dlq.append(json.dumps({"id": f"orig-{i}", "msg": f"m{i}"}), time.time(), f"dlq-{i}")
        dlq.write()
    finally:
        store.close()


def replayed_texts(data_dir: Path) -> list[str]:
    store = FileStore(data_dir)
    store.open()
    try:
        log_ = store.get("t")
        return [] if log_ is None else [r.msg for r in log_.read(1, 10**6)]
    finally:
        store.close()


async def test_replays_whose_journal_lines_were_lost_are_not_replayed_again(
    brokers: BrokerFactory,
) -> None:
    """What a kill -9 between a replay's publish and its journal line leaves behind."""
    store_letters(brokers.data_dir, 30)
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    assert await w.cmd("REPLAY t ALL") == "OK replayed 30"
    await w.close()
    await brokers.stop(broker)
    journal = brokers.data_dir / "replays" / "t.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:-12]))  # the last 12 replays' lines never made it
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    assert await w.cmd("REPLAY t ALL") == "OK replayed 0"
    await w.close()
    await brokers.stop(broker)
    assert sorted(replayed_texts(brokers.data_dir)) == sorted(f"m{i}" for i in range(30))


def test_kill_9_during_replay_all_republishes_no_letter_twice(
    broker_process: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    n = 20_000
    store_letters(tmp_path / "data", n)
    b = broker_process()
    topic_dir = tmp_path / "data" / "topics" / "t"

    async def replay_and_kill() -> None:
        w = await Wire.open(b.port)
        await w.send("REPLAY t ALL\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # some replays are written, not all
            if topic_dir.is_dir() and sum(f.stat().st_size for f in topic_dir.iterdir()) > 4096:
                break
            await asyncio.sleep(0.001)
        b.kill9()

    asyncio.run(replay_and_kill())
    partial = replayed_texts(tmp_path / "data")
    assert 0 < len(partial) < n, "the kill did not land in the middle of the replay"
    b = broker_process()

    async def replay_rest() -> None:
        w = await Wire.open(b.port)
        assert await w.cmd("REPLAY t ALL") == f"OK replayed {n - len(partial)}"
        await w.close()

    asyncio.run(replay_rest())
    b.terminate()
    texts = replayed_texts(tmp_path / "data")
    assert len(texts) == n and set(texts) == {f"m{i}" for i in range(n)}
