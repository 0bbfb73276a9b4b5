"""Every seed command and reply, byte for byte, over real TCP to an in-process broker."""

from __future__ import annotations

import asyncio
import re

import pytest

from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory
from tests.wire import Wire

MSG_LINE = re.compile(r"^MSG chat (msg_\d{13}_[0-9a-f]{8}) (\d+) (\d+\.\d+) (.*)$")


async def test_banner_ping_quit_byte_for_byte(broker: Broker) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.write(b"PING\nQUIT\n")
    assert await reader.read() == b"OK connected\nOK pong\nOK bye\n"
    writer.close()


async def test_publish_and_history_keep_the_text_exactly(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB chat hello  world") == "OK published"
    assert await w.cmd("PUB chat  ünïcode ✓ ") == "OK published"
    await w.send("HISTORY chat 10\n")
    lines = await w.until("OK history end")
    assert len(lines) == 3
    first = re.match(r"^HISTORY chat (msg_\d{13}_[0-9a-f]{8}) 1 (\d+\.\d+) hello  world$", lines[0])
    assert first, lines[0]
    assert re.match(r"^HISTORY chat msg_\S+ 2 \S+  ünïcode ✓ $", lines[1]), lines[1]


async def test_commands_are_case_insensitive_and_crlf_is_accepted(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    await w.send("ping\r\nPuB chat hi\r\nsub chat\r\nHeartBeat\r\n")
    assert await w.lines(4) == [
        "OK pong",
        "OK published",
        "OK subscribed chat",
        "OK heartbeat_received",
    ]
    await w.send("HISTORY chat 1\r\n")
    lines = await w.until("OK history end")
    assert lines[0].endswith(" hi")  # the CR is not part of the message


async def test_subscribe_replies_and_msg_format(broker: Broker) -> None:
    sub = await Wire.open(broker.port)
    assert await sub.cmd("SUB chat") == "OK subscribed chat"
    assert await sub.cmd("SUB chat workers") == "OK subscribed chat in group workers"
    pub = await Wire.open(broker.port)
    assert await pub.cmd("PUB chat hello there") == "OK published"
    # Once as a fanout subscriber, once as the group's only member.
    lines = await sub.lines(2)
    for line in lines:
        m = MSG_LINE.match(line)
        assert m, line
        assert m.group(2) == "1" and m.group(4) == "hello there"
    assert await sub.cmd("UNSUB chat") == "OK unsubscribed chat"
    assert await sub.cmd("UNSUB chat") == "ERR not subscribed to chat"


async def test_errors_leave_the_connection_usable(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    cases = [
        ("FOO bar", "ERR unknown command: FOO bar"),
        ("PUB chat", "ERR usage: PUB <topic> <message>"),
        ("SUB", "ERR usage: SUB <topic> [group_id]"),
        ("HISTORY chat", "ERR usage: HISTORY <topic> <n>"),
        ("HISTORY chat many", "ERR n must be an integer"),
        ("ACK", "ERR usage: ACK <message_id>"),
        ("ACK msg_1_00000000", "ERR no pending messages for this consumer"),
    ]
    for line, reply in cases:
        assert await w.cmd(line) == reply
    assert await w.cmd("PING") == "OK pong"


async def test_invalid_utf8_gets_an_err_not_a_crash(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    await w.send(b"PUB chat \xff\xfe\n")
    assert await w.line() == "ERR invalid utf-8"
    assert await w.cmd("PING") == "OK pong"


async def test_blank_lines_get_no_reply(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    await w.send("\n\r\n   \nPING\n")
    assert await w.line() == "OK pong"


async def test_history_of_unknown_topic_and_zero(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    assert await w.cmd("HISTORY nothing 5") == "OK history end"
    assert await w.cmd("PUB chat a") == "OK published"
    assert await w.cmd("HISTORY chat 0") == "OK history end"
    assert not (broker.store.get("nothing"))


async def test_history_returns_the_last_n_in_order(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    await w.send("".join(f"PUB chat m{i}\n" for i in range(1, 51)))
    assert await w.lines(50) == ["OK published"] * 50
    await w.send("HISTORY chat 3\n")
    lines = await w.until("OK history end")
    assert [line.split(" ")[3] for line in lines[:-1]] == ["48", "49", "50"]
    assert [line.split(" ", 5)[5] for line in lines[:-1]] == ["m48", "m49", "m50"]


async def test_two_fanout_subscribers_get_every_message_in_order(broker: Broker) -> None:
    subs = [await Wire.open(broker.port) for _ in range(2)]
    for s in subs:
        assert await s.cmd("SUB chat") == "OK subscribed chat"
    pubs = [await Wire.open(broker.port) for _ in range(3)]
    for i, p in enumerate(pubs):
        await p.send("".join(f"PUB chat p{i}-{j}\n" for j in range(100)))
    for p in pubs:
        assert await p.lines(100) == ["OK published"] * 100
    for s in subs:
        lines = await s.lines(300)
        offsets = [int(MSG_LINE.match(line).group(2)) for line in lines]  # type: ignore[union-attr]
        assert offsets == list(range(1, 301))
        texts = [line.rsplit(" ", 1)[1] for line in lines]
        for i in range(3):
            mine = [t for t in texts if t.startswith(f"p{i}-")]
            assert mine == [f"p{i}-{j}" for j in range(100)]


@pytest.mark.parametrize(
    "odd",
    [
        b"PUB chat \xff",
        b"PUB chat a\x00b",
        b"PUB chat ",
        b"PUB chat  spaced \r",
        b"PUB chat " + b"x" * 1_000_001,
        b"PUB chat " + "é".encode() * 32,
        b"PUB other y",
        b"pub chat lower",
        b"PING",
    ],
)
async def test_a_read_of_pubs_to_one_topic_answers_like_line_by_line(
    broker: Broker, odd: bytes
) -> None:
    """A read of PUBs to a topic already published to is checked and split at once.

    One odd line among them must get the answer it gets alone, and every
    other line must be stored with its exact text, in order.
    """
    alone = await Wire.open(broker.port)
    await alone.send(odd + b"\n")
    expected = await alone.line()
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB chat first") == "OK published"
    before = [f"b{i} x".encode() for i in range(5)]
    after = [f" a{i} ".encode() for i in range(5)]
    pubs = [b"PUB chat " + m + b"\n" for m in before]
    await w.send(b"".join(pubs) + odd + b"\n" + b"".join(b"PUB chat " + m + b"\n" for m in after))
    assert await w.lines(11) == ["OK published"] * 5 + [expected] + ["OK published"] * 5
    await w.send(b"".join(pubs))  # the whole read is one run
    assert await w.lines(5) == ["OK published"] * 5
    await w.send("HISTORY chat 100\n")
    lines = await w.until("OK history end")
    stored = [line.split(" ", 5)[5] for line in lines[:-1]]
    # When the odd line is a publish to chat, its text as stored from `alone` comes first.
    alone_stored = (
        stored[:1] if odd.lower().startswith(b"pub chat ") and expected == "OK published" else []
    )
    decoded = [m.decode() for m in before + after]
    texts = decoded[:5] + alone_stored + decoded[5:] + decoded[:5]
    assert stored == [*alone_stored, "first", *texts]


async def test_publishers_one_at_a_time_interleave_without_gaps(broker: Broker) -> None:
    """A lone publish is written at once, others in the same loop turn wait for the
    tick: subscribers must still see one gap-free order."""
    sub = await Wire.open(broker.port)
    assert await sub.cmd("SUB chat") == "OK subscribed chat"
    pubs = [await Wire.open(broker.port) for _ in range(8)]

    async def one_at_a_time(i: int, p: Wire) -> None:
        for j in range(40):
            assert await p.cmd(f"PUB chat p{i}-{j}") == "OK published"

    await asyncio.gather(*(one_at_a_time(i, p) for i, p in enumerate(pubs)))
    lines = await sub.lines(320)
    offsets = [int(MSG_LINE.match(line).group(2)) for line in lines]  # type: ignore[union-attr]
    assert offsets == list(range(1, 321))
    texts = [line.rsplit(" ", 1)[1] for line in lines]
    for i in range(8):
        assert [t for t in texts if t.startswith(f"p{i}-")] == [f"p{i}-{j}" for j in range(40)]


async def test_publishing_to_a_topic_you_follow_answers_before_the_msg(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB chat") == "OK subscribed chat"
    for i in range(3):  # the first PUB takes the general path, later ones the shortcut
        await w.send(f"PUB chat m{i}\n")
        reply, msg = await w.lines(2)
        assert reply == "OK published"
        m = MSG_LINE.match(msg)
        assert m and m.group(2) == str(i + 1) and m.group(4) == f"m{i}"


async def test_subscriber_only_sees_messages_after_subscribing(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB chat before") == "OK published"
    assert await w.cmd("SUB chat") == "OK subscribed chat"
    assert await w.cmd("PUB other x") == "OK published"
    assert await w.silent(0.1)


async def test_pipelined_publishes_from_one_read_are_all_acknowledged(broker: Broker) -> None:
    w = await Wire.open(broker.port)
    await w.send("".join(f"PUB bulk {i}\nPING\n" for i in range(1000)))
    assert await w.lines(2000) == ["OK published", "OK pong"] * 1000
    assert broker.store.get("bulk").last_offset == 1000  # type: ignore[union-attr]


async def test_quit_after_pipelined_publish_still_answers_everything(broker: Broker) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.write(b"PING\nPUB chat hello  world\nQUIT\n")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 5)
    assert data == b"OK connected\nOK pong\nOK published\nOK bye\n"


async def test_half_closed_client_gets_its_replies(broker: Broker) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
    writer.write(b"PUB chat a\nPUB chat b\n")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 5)
    assert data == b"OK connected\nOK published\nOK published\n"


async def test_repeat_publishes_to_a_topic_get_the_same_answers_as_the_first(
    broker: Broker,
) -> None:
    """The second PUB to a topic takes a shortcut; its answers must not change."""
    w = await Wire.open(broker.port)
    for _ in range(2):
        await w.send(
            b"PUB chat ok\nPUB chat \xff\nPUB chat a\x00b\nPUB chat \nPUB chat  spaced \r\n"
        )
        assert await w.lines(5) == [
            "OK published",
            "ERR invalid utf-8",
            "ERR invalid NUL byte",
            "ERR usage: PUB <topic> <message>",
            "OK published",
        ]
    await w.send("HISTORY chat 4\n")
    lines = await w.until("OK history end")
    assert [line.split(" ", 5)[5] for line in lines[:-1]] == ["ok", " spaced ", "ok", " spaced "]


async def test_a_publisher_waiting_for_each_reply_gets_the_answers_of_a_pipeline(
    brokers: BrokerFactory,
) -> None:
    """A read that is one PUB to a topic already published to skips the framer;
    every odd read must still get the answer the general path gives."""
    broker = await brokers.start(max_line_bytes=64)
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB chat first") == "OK published"
    reads = [
        (b"PUB chat \xff\n", "ERR invalid utf-8"),
        (b"PUB chat a\x00b\n", "ERR invalid NUL byte"),
        (b"PUB chat \n", "ERR usage: PUB <topic> <message>"),
        (b"PUB chat  spaced \r\n", "OK published"),
        (b"PUB chat " + b"x" * 60 + b"\n", "ERR line too long"),
        (b"PUB other y\n", "OK published"),  # a topic not yet published to here
        (b"PUB chat last\n", "OK published"),
    ]
    for data, reply in reads:
        await w.send(data)
        assert await w.line() == reply
    await w.send(b"PUB chat sp")  # a line in two reads: the second is no whole line
    await asyncio.sleep(0.05)
    await w.send(b"lit\n")
    assert await w.line() == "OK published"
    await w.send("HISTORY chat 10\n")
    lines = await w.until("OK history end")
    assert [line.split(" ", 5)[5] for line in lines[:-1]] == ["first", " spaced ", "last", "split"]
