"""Protocol v2 in the client without a broker: encoders, the frame parser, and the reader."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linemq.clients.aio import Client
from linemq.clients.options import escape_value, format_duration, topic_matches, unescape_value
from linemq.clients.protocol import (
    FrameHead,
    ProtocolError,
    PublishResult,
    encode_hello,
    encode_put,
    encode_seek,
    encode_sub,
    encode_unsub,
    parse_put_reply,
    parse_seek,
    parse_server_line,
)

if TYPE_CHECKING:
    from conftest import FakeBroker


def test_encode_put_counts_bytes_and_formats_options() -> None:
    data = encode_put(
        "t",
        b"a\x00\nb",
        key="user-1",
        priority=3,
        delay=1.5,
        ttl=timedelta(hours=1),
        id="p-1",
        headers={"content-type": "text/plain; charset=utf-8", "note": "100%=é"},
    )
    assert data == (
        b"PUT t 4 key=user-1 priority=critical delay=1.5s ttl=3600s id=p-1 "
        b"h.content-type=text/plain;%20charset%3Dutf-8 h.note=100%25%3D%C3%A9\na\x00\nb\n"
    )
    assert encode_put("t", "é") == "PUT t 2\né\n".encode()
    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert encode_put("t", b"", at=at, priority="HIGH") == (
        b"PUT t 0 priority=high at=1893456000\n\n"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (0.25, "250ms"), (1.5, "1.5s"), (0.0015, "0.0015s"), ("2m", "2m"), (0, "0s")],
)
def test_durations_use_the_shortest_exact_form(seconds: float | str, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    "options",
    [
        {"key": "has space"},
        {"id": ""},
        {"priority": "urgent"},
        {"priority": 4},
        {"priority": True},
        {"delay": -1},
        {"delay": float("nan")},
        {"delay": "soon"},
        {"ttl": 366 * 86400},
        {"delay": 1, "at": 2.0},
        {"at": -5.0},
        {"headers": {"bad name": "x"}},
        {"headers": {"h": "x" * 1100}},
    ],
)
def test_encode_put_refuses_what_the_broker_would(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        encode_put("t", b"x", **options)  # type: ignore[arg-type]


def test_sub_seek_hello_and_patterns() -> None:
    assert encode_sub("orders.*") == b"SUB orders.*\n"
    assert encode_sub("orders.>", "billing", "earliest") == b"SUB orders.> billing from=earliest\n"
    assert encode_sub("t", start=42) == b"SUB t from=42\n"
    assert encode_sub("t", start=1758865780.5) == b"SUB t from=time:1758865780.5\n"
    assert encode_sub("t", start=timedelta(minutes=5)) == b"SUB t from=ago:300s\n"
    assert encode_sub("t", start="ago:5m") == b"SUB t from=ago:5m\n"
    assert encode_unsub("a.*.c") == b"UNSUB a.*.c\n"
    assert encode_seek("jobs", "g", "latest") == b"SEEK jobs g latest\n"
    assert encode_hello(2) == b"HELLO 2\n"
    for bad in [
        lambda: encode_sub("orders.*", start="earliest"),  # wildcard fanout: no from=
        lambda: encode_sub("orders.>.x"),
        lambda: encode_sub("t", start=0),
        lambda: encode_sub("t", start="yesterday"),
        lambda: encode_seek("jobs.*", "g", 1),
        lambda: encode_hello(3),
    ]:
        with pytest.raises(ValueError):
            bad()


def test_topic_patterns_match_like_the_broker() -> None:
    assert topic_matches("orders.*", "orders.eu")
    assert not topic_matches("orders.*", "orders.eu.fr")
    assert topic_matches("orders.>", "orders.eu.fr")
    assert not topic_matches("orders.>", "orders")
    assert topic_matches("*.eu", "orders.eu")


def test_frame_head_and_completion() -> None:
    head = parse_server_line(
        b"MSG2 t msg_1_0000000a 7 1758865780.25 2 5 key=k priority=low h.a=x%20y h.b=%3D\n"
    )
    assert isinstance(head, FrameHead)
    assert (head.topic, head.offset, head.attempt, head.nbytes) == ("t", 7, 2, 5)
    frame = head.complete(b"a\nb\xff\x00\n")
    assert frame.payload == b"a\nb\xff\x00"
    assert (frame.key, frame.priority, dict(frame.headers)) == ("k", "low", {"a": "x y", "b": "="})
    assert frame.raw == "MSG t msg_1_0000000a 7 1758865780.25 a\\nb\ufffd\x00"
    history = parse_server_line(b"HISTORY2 t id 1 1.5 0 0 future=option\n")
    assert isinstance(history, FrameHead) and history.priority == "normal"
    assert history.complete(b"\n").raw == "HISTORY t id 1 1.5 "
    with pytest.raises(ProtocolError):
        head.complete(b"a\nb\xff\x00X")
    for bad in [b"MSG2 t id 1 1.5 0\n", b"MSG2 t id 1 1.5 0 -1\n", b"MSG2 t id x 1.5 0 1\n"]:
        with pytest.raises(ProtocolError):
            parse_server_line(bad)


def test_put_and_seek_replies() -> None:
    assert parse_put_reply("published 3 msg_1_a") == PublishResult(3, "msg_1_a", False)
    assert parse_put_reply("duplicate 3 msg_1_a") == PublishResult(3, "msg_1_a", True)
    assert parse_seek("seek jobs g 12") == 12
    for bad in ["published", "published x y", "stored 1 a"]:
        with pytest.raises(ProtocolError):
            parse_put_reply(bad)


@given(st.text())
def test_header_values_survive_escaping(value: str) -> None:
    escaped = escape_value(value)
    assert " " not in escaped and "=" not in escaped and escaped.isascii()
    assert unescape_value(escaped) == value


# --- the reader, against scripted servers ---------------------------------------


@contextlib.asynccontextmanager
async def scripted(reply: Callable[[str], bytes]) -> AsyncIterator[int]:
    """A server that answers each line with ``reply(line)``, written a byte at a time."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"OK connected\n")
        while line := await reader.readline():
            for i, byte in enumerate(reply(line.decode().rstrip("\n"))):
                writer.write(bytes([byte]))
                if i % 7 == 0:
                    await writer.drain()
                    await asyncio.sleep(0)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def v2_server(line: str) -> bytes:
    word, _, rest = line.partition(" ")
    frame = b"MSG2 %s id%d 1 1.5 1 3\nx\ny\n"
    match word:
        case "HELLO":
            return b"OK hello 2\n"
        case "SUB":
            topic = rest.split()[0].encode()
            return b"OK subscribed " + topic + b"\n"
        case "PING":  # deliveries for several topics, then the pong
            return b"".join(frame % (t, i) for i, t in enumerate([b"a.x", b"a.y", b"b"])) + (
                b"OK pong\n"
            )
        case "HISTORY":
            return b"HISTORY2 h id 1 1.5 0 2 h.k=v\n\x00\n\nOK history end\n"
        case "QUIT":
            return b"OK bye\n"
    return b"ERR unknown command: " + line.encode() + b"\n"


async def test_frames_split_anywhere_are_routed_exact_name_first() -> None:
    async with scripted(v2_server) as port, Client(port=port) as c:
        assert c.protocol == 2
        star = await c.subscribe_to("a.*")
        wide = await c.subscribe_to("*")
        exact = await c.subscribe_to("a.y")
        await c.ping()
        assert (await star.next()).topic == "a.x"
        assert [(m.topic, m.payload, m.id) for m in [await exact.next()]] == [
            ("a.y", b"x\ny", "id1")
        ]
        assert (await wide.next()).topic == "b"
        (h,) = await c.history("h", 1)
        assert (h.payload, dict(h.headers), h.attempt) == (b"\x00\n", {"k": "v"}, 0)


async def test_old_server_falls_back_to_v1(fake_broker: FakeBroker) -> None:
    async with Client(port=fake_broker.port) as c:
        assert c.protocol == 1
        await c.publish("t", "still works")
    assert fake_broker.received[:2] == ["HELLO 2 notices", "HELLO 2"]
    async with Client(port=fake_broker.port, protocol=1) as c:
        assert c.protocol == 1
    assert fake_broker.received.count("HELLO 2") == 1  # protocol=1 sends no HELLO
