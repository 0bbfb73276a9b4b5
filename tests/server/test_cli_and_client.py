"""The client CLIs and the Python client against a real broker, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import re
import sys

from linemq.broker.server.app import Broker
from linemq.clients import Client
from tests.conftest import BrokerFactory
from tests.server.groupwire import member, next_msg
from tests.wire import Wire, group_figures


async def linemq(broker: Broker, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from broker.cli import main; main()",
        *args,
        "--port",
        str(broker.port),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_pub_history_and_sub_commands(broker: Broker) -> None:
    sub = asyncio.create_task(linemq(broker, "sub", "chat", "--count", "3"))
    w = await Wire.open(broker.port)
    while True:  # wait until the CLI subscriber is in
        await asyncio.sleep(0.05)
        if broker.router.fanout.get("chat"):
            break
    assert (await linemq(broker, "pub", "chat", "hi there"))[0] == 0
    assert (await linemq(broker, "pub", "chat", stdin=b"a\n\nb\n"))[0] == 0
    code, out, _ = await sub
    assert code == 0
    lines = out.splitlines()
    assert [line.split(" ", 5)[5] for line in lines] == ["hi there", "a", "b"]
    assert all(line.startswith("MSG chat msg_") for line in lines)
    code, out, _ = await linemq(broker, "history", "chat", "-n", "2")
    assert code == 0
    assert [line.split(" ", 5)[5] for line in out.splitlines()] == ["a", "b"]
    await w.close()


async def test_pub_reports_errors(broker: Broker) -> None:
    code, _, err = await linemq(broker, "pub", "../etc", "x")
    assert code != 0 and "invalid topic name" in err


async def test_sub_group_acks_after_printing(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    for i in range(3):
        assert await w.cmd(f"PUB jobs j{i}") == "OK published"
    # Join the group first so the backlog belongs to it.
    m = await member(broker.port, "jobs", "workers")
    assert await m.cmd("UNSUB jobs workers") == "OK unsubscribed jobs from group workers"
    assert await w.cmd("PUB jobs j3") == "OK published"
    code, out, _ = await linemq(broker, "sub", "jobs", "--group", "workers", "--count", "1")
    assert code == 0 and out.split(" ", 5)[5].strip() == "j3"
    assert group_figures(await w.cmd("GROUPS jobs")) == (
        "GROUP jobs workers members=0 inflight=0 waiting=0 lag=0 acked=1 dead=0 "
        "next_offset=5 paused=0"
    )


async def test_dlq_list_and_replay_commands(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=0.05, max_retries=0)
    m = await member(broker.port, "pay", "g")
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB pay.dlq") == "OK subscribed pay.dlq"
    assert await w.cmd("PUB pay charge-7") == "OK published"
    d = await next_msg(m)
    await w.line()  # the dead letter arrives
    code, out, _ = await linemq(broker, "dlq", "list", "pay", "--json")
    assert code == 0
    letter = json.loads(out.splitlines()[0])
    assert letter["id"] == d.id and letter["reason"] == "ack_timeout"
    code, out, _ = await linemq(broker, "dlq", "list", "pay")
    assert code == 0 and "charge-7" in out and "ack_timeout" in out
    code, out, _ = await linemq(broker, "dlq", "replay", "pay", "--id", d.id)
    assert code == 0 and "replayed 1" in out
    again = await next_msg(m)
    assert again.text == "charge-7" and again.offset == 2


async def test_dlq_list_shows_what_a_replay_of_a_put_carries(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=0.05, max_retries=0)
    m = await member(broker.port, "pay", "g")
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB pay.dlq") == "OK subscribed pay.dlq"
    assert await w.cmd("PUB pay plain-1") == "OK published"
    code, _, err = await linemq(
        broker, "pub", "pay", "--key", "acct-9", "--priority", "high", "-H", "trace=abc", "put-2"
    )
    assert code == 0, err
    for _ in range(2):
        await next_msg(m)
        await w.line()  # its dead letter
    code, out, _ = await linemq(broker, "dlq", "list", "pay")
    assert code == 0
    header, *rows = (re.split(r"\s{2,}", line) for line in out.splitlines())
    column = dict(zip(header, zip(*rows, strict=True), strict=True))
    assert dict(zip(column["MESSAGE"], column["V2"], strict=True)) == {
        "plain-1": "-",
        "put-2": "key=acct-9 priority=high headers=1",
    }


async def test_async_client_publishes_subscribes_and_acks(broker: Broker) -> None:
    async with (
        Client("127.0.0.1", broker.port) as producer,
        Client("127.0.0.1", broker.port, heartbeat_interval=0.05) as consumer,
    ):
        sub = await consumer.subscribe_to("orders", group="billing")
        await producer.publish_many("orders", [f"o{i}" for i in range(50)])
        seen = []
        async for message in sub:
            seen.append(message.text)
            await message.ack()
            if len(seen) == 50:
                break
        assert seen == [f"o{i}" for i in range(50)]
        history = await producer.history("orders", 3)
        assert [m.offset for m in history] == [48, 49, 50]
        groups = await producer.groups("orders")
        assert groups[0].group == "billing" and groups[0].acked == 50
