"""TERM (fail a message for good) and NACK's reason text, over real TCP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from linemq.broker.protocol.parser import MAX_REASON_BYTES, REASON_CUT
from tests.conftest import BrokerFactory, BrokerProcess
from tests.server.groupwire import member, next_msg, parse_msg
from tests.server.test_retries import publish
from tests.server.v2wire import put
from tests.wire import Wire, group_figures


async def dead_letters(port: int, topic: str) -> list[dict[str, Any]]:
    w = await Wire.open(port)
    await w.send(f"DLQ {topic}\n")
    lines = await w.until("OK dlq end")
    await w.close()
    return [json.loads(line.split(" ", 3)[3]) for line in lines[:-1]]


async def test_term_dead_letters_at_once_with_the_consumers_reason(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=10, max_retries=5)
    watcher = await Wire.open(broker.port)
    assert await watcher.cmd("SUB q.dlq") == "OK subscribed q.dlq"
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "poison")
    d = await next_msg(m)
    reason = 'cannot parse {"a": 1} \\ at col 3: ünïcode ✓'
    assert await m.cmd(f"TERM {d.id} {reason}") == "OK terminated"
    letter = json.loads(parse_msg(await watcher.line()).text)
    assert (letter["id"], letter["msg"], letter["attempts"]) == (d.id, "poison", 1)
    assert letter["reason"] == "terminated" and letter["error"] == reason
    assert await m.silent(0.2), "no retry is left for a terminated message"
    assert await m.cmd(f"ACK {d.id}") == (
        f"ERR message {d.id} not found in pending messages (terminated)"
    )
    assert group_figures(await m.cmd("GROUPS q")) == (
        "GROUP q g members=1 inflight=0 waiting=0 lag=0 acked=0 dead=1 next_offset=2 paused=0"
    )
    assert await m.line() == "OK groups end"
    [listed] = await dead_letters(broker.port, "q")
    assert listed["error"] == reason and listed["reason"] == "terminated"


async def test_term_without_a_reason_and_with_a_long_one(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=10)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "one", "two")
    first, second = await next_msg(m), await next_msg(m)
    assert await m.cmd(f"TERM {first.id}") == "OK terminated"
    assert await m.cmd(f"TERM {second.id} {'x' * 5000}") == "OK terminated"
    plain, long = await dead_letters(broker.port, "q")
    assert plain["reason"] == "terminated" and "error" not in plain
    assert long["error"].endswith(REASON_CUT) and len(long["error"]) == MAX_REASON_BYTES


async def test_term_of_an_id_not_held_gets_the_ack_error(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=10)
    outsider = await Wire.open(broker.port)
    assert await outsider.cmd("TERM msg_1_x why") == "ERR no pending messages for this consumer"
    assert await outsider.cmd("TERM") == "ERR usage: TERM <message_id> [reason text]"
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "a")
    d = await next_msg(m)
    for verb in ("ACK", "TERM"):
        assert await m.cmd(f"{verb} nope") == "ERR message nope not found in pending messages"
    assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    assert await m.cmd(f"TERM {d.id}") == (
        f"ERR message {d.id} not found in pending messages (already acknowledged)"
    )
    assert await dead_letters(broker.port, "q") == []


async def test_term_releases_the_key_it_held(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=10)
    m = await member(broker.port, "q", "g")
    pub = await Wire.open(broker.port)
    for text in (b"k first", b"k second"):
        assert (await put(pub, "q", text, "key=k")).startswith("OK ")
    first = await next_msg(m)
    assert first.text == "k first"
    assert await m.silent(0.1), "the key holds the second back"
    assert await m.cmd(f"TERM {first.id} bad") == "OK terminated"
    assert (await next_msg(m)).text == "k second"


async def test_nack_reason_is_stored_with_the_attempt_and_in_the_letter(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=10, max_retries=2)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "flaky")
    d = await next_msg(m)
    assert await m.cmd(f"NACK {d.id} reason=db down") == "OK nack_received"
    d = await next_msg(m, timeout=1)
    assert await m.cmd(f"NACK {d.id} 0.05 reason=timeout talking to db") == "OK nack_received"
    d = await next_msg(m, timeout=2)
    assert await m.cmd(f"NACK {d.id} 0 reason=gave up: 3rd try") == "OK nack_received"
    [letter] = await dead_letters(broker.port, "q")
    assert letter["reason"] == "nacked" and letter["attempts"] == 3
    assert letter["error"] == "gave up: 3rd try"
    # The old forms still work as they did.
    await publish(broker.port, "q", "plain")
    d = await next_msg(m)
    assert await m.cmd(f"NACK {d.id} 1ms") == "OK nack_received"
    d = await next_msg(m)
    assert await m.cmd(f"NACK {d.id} soon") == (
        "ERR delay must be a number of seconds between 0 and 31536000"
    )
    assert await m.cmd(f"NACK {d.id} reason=") == "ERR reason must not be empty"


async def test_an_ack_timeout_after_a_nack_reason_clears_it(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=0.1, retry_backoff_base=0.01, max_retries=1)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "x")
    d = await next_msg(m)
    assert await m.cmd(f"NACK {d.id} reason=first failure") == "OK nack_received"
    await next_msg(m)  # then left to time out: the letter says why, with no stale text
    watcher = await Wire.open(broker.port)
    for _ in range(100):
        letters = await dead_letters(broker.port, "q")
        if letters:
            break
        await asyncio.sleep(0.05)
    await watcher.close()
    [letter] = letters
    assert letter["reason"] == "ack_timeout" and "error" not in letter


def test_a_term_acknowledged_before_kill_9_is_never_delivered_again(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    b = broker_process("--ack-timeout", "30", "--max-retries", "5")

    async def term_then_kill() -> tuple[str, str]:
        m = await member(b.port, "q", "g")
        await publish(b.port, "q", "poison", "fine")
        poison, fine = await next_msg(m), await next_msg(m)
        assert await m.cmd(f"TERM {poison.id} broken payload") == "OK terminated"
        b.kill9()
        return poison.id, fine.id

    poison_id, fine_id = asyncio.run(term_then_kill())
    b = broker_process("--ack-timeout", "30", "--max-retries", "5")

    async def after_restart() -> None:
        m = await member(b.port, "q", "g")
        again = await next_msg(m)
        assert again.id == fine_id, "only the message in flight at the kill comes back"
        assert await m.cmd(f"ACK {again.id}") == "OK ack_received"
        assert await m.silent(0.3)
        letters = await dead_letters(b.port, "q")
        assert [(x["id"], x["error"]) for x in letters] == [(poison_id, "broken payload")]

    asyncio.run(after_restart())


async def test_a_term_whose_letter_cannot_be_written_yet_is_never_delivered(
    brokers: BrokerFactory,
) -> None:
    # With no room for q.dlq the letter waits; across a restart the message stays
    # terminated: it is dead-lettered as soon as it can be, never handed out again.
    broker = await brokers.start(max_topics=1, ack_timeout=10, max_retries=5)
    m = await member(broker.port, "q", "g")
    await publish(broker.port, "q", "poison")
    d = await next_msg(m)
    assert await m.cmd(f"TERM {d.id} bad data") == "OK terminated"
    assert await m.silent(0.3)
    assert broker.store.get("q.dlq") is None
    broker = await brokers.restart(broker, max_topics=10)
    m = await member(broker.port, "q", "g")
    assert await m.silent(0.3)
    letters = await dead_letters(broker.port, "q")
    assert [(x["id"], x["reason"], x["error"]) for x in letters] == [
        (d.id, "terminated", "bad data")
    ]
