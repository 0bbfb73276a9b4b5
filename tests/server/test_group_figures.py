"""GROUPS figures as protocol.md defines them, before and after restarts (issue 26, item 9).

``waiting`` counts what is pending and not in flight, which includes at most 512 messages
taken ahead of delivery; ``next_offset`` is the next message never delivered.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import BrokerFactory, BrokerProcess
from tests.server.groupwire import next_msg
from tests.wire import Wire, group_figures

LOOKAHEAD = 512
COUNT = 3000


async def figures(port: int, topic: str = "jobs") -> dict[str, int]:
    w = await Wire.open(port)
    await w.send(f"GROUPS {topic}\n")
    lines = await w.until("OK groups end")
    await w.close()
    (line,) = [line for line in lines if line.startswith("GROUP ")]
    figures = group_figures(line).split(" ")[3:]  # without the policy keys after them
    return {k: int(v) for k, v in (f.split("=") for f in figures)}


async def publish(port: int, n: int) -> None:
    w = await Wire.open(port)
    await w.send("".join(f"PUB jobs m{i}\n" for i in range(n)))
    assert await w.lines(n, timeout=30) == ["OK published"] * n
    await w.close()


async def one_delivered(port: int) -> tuple[Wire, int]:
    """A member (``--max-inflight 1``) that takes one message and holds it."""
    w = await Wire.open(port)
    assert await w.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    got = await next_msg(w)
    return w, got.offset


def check_live(f: dict[str, int], *, next_offset: int = 2) -> None:
    assert f["members"] == 1 and f["inflight"] == 1
    assert f["waiting"] <= LOOKAHEAD, f
    assert f["next_offset"] == next_offset, f
    assert f["lag"] == COUNT, f


def check_stopped(f: dict[str, int]) -> None:
    # Offset 1 was out when the broker stopped: it waits to be delivered again; nothing
    # else was ever delivered, so nothing else waits and the next never delivered is 2.
    assert f == {
        "members": 0,
        "inflight": 0,
        "waiting": 1,
        "lag": COUNT,
        "acked": 0,
        "dead": 0,
        "next_offset": 2,
        "paused": 0,
    }


async def test_figures_match_the_docs_live_and_after_graceful_restarts(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=1)
    setup = await Wire.open(broker.port)
    assert await setup.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    assert await setup.cmd("UNSUB jobs workers") == "OK unsubscribed jobs from group workers"
    await publish(broker.port, COUNT)
    member, offset = await one_delivered(broker.port)
    assert offset == 1
    check_live(await figures(broker.port))
    await member.close()
    for _ in range(2):  # the second time, the records come from disk (2048 a read)
        broker = await brokers.restart(broker)
        check_stopped(await figures(broker.port))
        member, offset = await one_delivered(broker.port)
        assert offset == 1  # delivered again
        check_live(await figures(broker.port))
        await member.close()


async def test_figures_after_kill9_with_only_offset_1_ever_delivered(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--max-inflight", "1", "--fsync", "always")
    setup = await Wire.open(proc.port)
    assert await setup.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    assert await setup.cmd("UNSUB jobs workers") == "OK unsubscribed jobs from group workers"
    await publish(proc.port, COUNT)
    for _ in range(2):  # the second run reads its records from disk
        member, offset = await one_delivered(proc.port)
        assert offset == 1
        check_live(await figures(proc.port))
        assert await member.cmd("PING") == "OK pong"  # its delivery is journaled by now
        proc.kill9()
        proc = broker_process("--max-inflight", "1", data_dir=proc.data_dir)
        check_stopped(await figures(proc.port))


async def test_acked_messages_move_next_offset_and_a_restart_keeps_it(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=1)
    setup = await Wire.open(broker.port)
    assert await setup.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    assert await setup.cmd("UNSUB jobs workers") == "OK unsubscribed jobs from group workers"
    await publish(broker.port, COUNT)
    member = await Wire.open(broker.port)
    assert await member.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    for expected in range(1, 4):
        got = await next_msg(member)
        assert got.offset == expected
        assert await member.cmd(f"ACK {got.id}") == "OK ack_received"
    f = await figures(broker.port)
    assert f["acked"] == 3 and f["inflight"] == 1 and f["next_offset"] == 5
    assert f["lag"] == COUNT - 3 and f["waiting"] <= LOOKAHEAD
    await member.close()
    broker = await brokers.restart(broker)
    f = await figures(broker.port)
    assert (f["acked"], f["inflight"], f["waiting"], f["next_offset"]) == (3, 0, 1, 5)
    assert f["lag"] == COUNT - 3
