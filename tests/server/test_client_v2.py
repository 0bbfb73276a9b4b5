"""The client's protocol-v2 API against a real broker: put, frames, starts, wildcards, seek."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from linemq.broker.server.app import Broker
from linemq.clients.aio import BrokerError, Client, Message, Subscription
from linemq.clients.sync import SyncClient
from tests.conftest import BrokerFactory

REPO_ROOT = Path(__file__).resolve().parents[2]


async def next_message(sub: Subscription, timeout: float = 5.0) -> Message:
    return await asyncio.wait_for(sub.next(), timeout)


async def test_client_negotiates_v2_and_v1_on_request(broker: Broker) -> None:
    async with Client(port=broker.port) as v2, Client(port=broker.port, protocol=1) as v1:
        assert (v2.protocol, v1.protocol) == (2, 1)


async def test_binary_payload_with_headers_and_key_round_trips(broker: Broker) -> None:
    payload = b"line one\nline\x00two\r\n\xff\xfe"
    headers = {"content-type": "application/octet-stream", "note": "a b=c%d é"}
    async with Client(port=broker.port) as sub_client, Client(port=broker.port) as pub:
        sub = await sub_client.subscribe_to("bin")
        result = await pub.put("bin", payload, key="user-1", headers=headers, priority="high")
        assert (result.offset, result.duplicate) == (1, False)
        m = await next_message(sub)
        assert (m.payload, m.key, m.priority, m.attempt) == (payload, "user-1", "high", 1)
        assert dict(m.headers) == headers and m.id == result.id and m.offset == 1
        assert m.text == payload.decode("utf-8", errors="replace")
        # The v1 view of the same message, as a v1 connection would have got it.
        assert m.raw.endswith(" line one\\nline\x00two\\r\\n\ufffd\ufffd")
        (h,) = await sub_client.history("bin", 5)
        assert (h.payload, dict(h.headers), h.attempt) == (payload, headers, 0)


async def test_v1_client_sees_a_put_payload_as_one_line(broker: Broker) -> None:
    async with Client(port=broker.port, protocol=1) as v1, Client(port=broker.port) as pub:
        sub = await v1.subscribe_to("t")
        await pub.put("t", b"two\nlines")
        m = await next_message(sub)
        assert (m.text, m.payload) == ("two\\nlines", b"two\\nlines")
        assert (m.attempt, m.priority) == (None, None)


async def test_same_publisher_id_is_stored_once(broker: Broker) -> None:
    async with Client(port=broker.port) as c:
        first = await c.put("orders", b"charge 42", id="order-42")
        again = await c.put("orders", b"charge 42", id="order-42")
        assert not first.duplicate and again.duplicate
        assert (again.offset, again.id) == (first.offset, first.id)
        assert len(await c.history("orders", 10)) == 1


async def test_put_errors_are_broker_errors_and_the_connection_goes_on(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_message_bytes=10)
    async with Client(port=broker.port) as c:
        with pytest.raises(BrokerError, match="message too large"):
            await c.put("t", b"x" * 11)
        with pytest.raises(ValueError, match="priority"):
            await c.put("t", b"x", priority="urgent")
        assert (await c.put("t", b"", ttl=timedelta(hours=1))).offset == 1
        await c.ping()


async def test_delayed_put_arrives_later(broker: Broker) -> None:
    async with Client(port=broker.port) as c:
        sub = await c.subscribe_to("q", "g")
        start = time.monotonic()
        await c.put("q", "later", delay=0.3)
        m = await next_message(sub)
        assert m.text == "later" and time.monotonic() - start >= 0.29
        await m.ack()


async def test_subscribe_from_earliest_replays_then_goes_live(broker: Broker) -> None:
    async with Client(port=broker.port) as c:
        for text in ["a", "b", "c"]:
            await c.put("t", text)
        sub = await c.subscribe_to("t", start="earliest")
        await c.publish("t", "d")
        assert [(await next_message(sub)).text for _ in range(4)] == ["a", "b", "c", "d"]
    async with Client(port=broker.port) as c:
        sub = await c.subscribe_to("t", start=2)
        assert [(await next_message(sub)).offset for _ in range(3)] == [2, 3, 4]


async def test_wildcard_subscription_receives_concrete_topics(broker: Broker) -> None:
    async with Client(port=broker.port) as c, Client(port=broker.port) as pub:
        star = await c.subscribe_to("orders.*")
        exact = await c.subscribe_to("payments")
        await pub.put("orders.eu", b"1")
        await pub.put("orders.us", b"2")
        await pub.put("payments", b"3")
        await pub.put("orders.eu.fr", b"4")  # not matched by orders.*
        got = [await next_message(star) for _ in range(2)]
        assert [(m.topic, m.payload) for m in got] == [("orders.eu", b"1"), ("orders.us", b"2")]
        assert (await next_message(exact)).payload == b"3"
        await star.unsubscribe()
        with pytest.raises(ValueError, match="wildcard fanout"):
            c.subscribe("orders.*", start="earliest")


async def test_wildcard_group_acks_deliveries_of_several_topics(broker: Broker) -> None:
    async with Client(port=broker.port) as c, Client(port=broker.port) as pub:
        sub = await c.subscribe_to("jobs.>", "workers", start="earliest")
        await pub.put("jobs.a", b"x")
        await pub.put("jobs.b.c", b"y")
        got = [await next_message(sub) for _ in range(2)]
        assert sorted(m.topic for m in got) == ["jobs.a", "jobs.b.c"]
        for m in got:
            assert m.group == "workers"
            await m.ack()


async def test_seek_moves_a_group_back(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_inflight=10)
    async with Client(port=broker.port) as c:
        sub = await c.subscribe_to("jobs", "g")
        for text in ["a", "b", "c"]:
            await c.put("jobs", text)
        for _ in range(3):
            await (await next_message(sub)).ack()
        assert await c.seek("jobs", "g", 2) == 2
        again = [await next_message(sub) for _ in range(2)]
        assert [(m.text, m.attempt) for m in again] == [("b", 1), ("c", 1)]
        assert await c.seek("jobs", "g", "latest") == 4
        with pytest.raises(BrokerError, match="no group nope on jobs"):
            await c.seek("jobs", "nope", "earliest")


async def test_sync_client_put_subscribe_and_seek(broker: Broker) -> None:
    # The broker runs on this loop, so the blocking client runs in a thread.
    await asyncio.to_thread(sync_session, broker.port)


def sync_session(port: int) -> None:
    with SyncClient(port=port) as c:
        assert c.protocol == 2
        sub = c.subscribe("s.*", "g", start="earliest")
        result = c.put("s.one", b"\x00\x01", headers={"k": "v"}, id="p-1")
        m = sub.next(timeout=5)
        assert (m.topic, m.payload, dict(m.headers)) == ("s.one", b"\x00\x01", {"k": "v"})
        assert m.id == result.id
        m.ack()
        assert c.put("s.one", b"\x00\x01", id="p-1").duplicate
        assert c.seek("s.one", "g", "earliest") == 1
        assert sub.next(timeout=5).payload == b"\x00\x01"


@dataclass
class Run:
    exit_code: int
    stdout_bytes: bytes
    stderr: str

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode()


async def linemq(broker: Broker, *args: str, stdin: bytes | None = None) -> Run:
    """``linemq ARGS`` in a subprocess (the in-process broker logs to this one's stdout)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "linemq.clients.cli",
        *args,
        "--port",
        str(broker.port),
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin or b""), 30)
    assert proc.returncode is not None
    return Run(proc.returncode, out, err.decode())


async def test_cli_pub_file_with_options_and_sub_from_earliest(
    broker: Broker, tmp_path: Path
) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"\x00bin\nary\xff")
    options = ["--header", "ct=application/x bin", "-H", "n=1", "--key", "k1", "--id", "f-1"]
    first = await linemq(broker, "pub", "files", "--file", str(payload), *options, "-v")
    assert first.exit_code == 0, first.stderr
    assert re.fullmatch(r"published 1 msg_\d{13}_[0-9a-f]{8}\n", first.stdout)
    again = await linemq(broker, "pub", "files", "--file", str(payload), *options, "-v")
    assert again.stdout == first.stdout.replace("published", "duplicate")
    assert (await linemq(broker, "pub", "files", "plain text", "--priority", "high")).stdout == ""
    assert (await linemq(broker, "pub", "files", "v1 line")).exit_code == 0
    async with Client(port=broker.port) as c:
        stored = await c.history("files", 10)
    assert [m.payload for m in stored] == [b"\x00bin\nary\xff", b"plain text", b"v1 line"]
    assert (dict(stored[0].headers), stored[0].key) == ({"ct": "application/x bin", "n": "1"}, "k1")
    assert stored[1].priority == "high"

    result = await linemq(broker, "sub", "files", "--from", "earliest", "--count", "3")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" ", 5)[5] for line in lines] == [
        "\\x00bin\\nary\\xff",
        "plain text",
        "v1 line",
    ]
    assert lines[2] == "MSG" + stored[2].raw.removeprefix("HISTORY")
    raw = await linemq(broker, "sub", "files", "--from", "1", "--count", "1", "--raw")
    assert raw.stdout_bytes == b"\x00bin\nary\xff"


async def test_cli_seek_and_bad_options(broker: Broker) -> None:
    async with Client(port=broker.port) as c:
        await c.subscribe_to("jobs", "g")
        for text in ["a", "b"]:
            await c.put("jobs", text)
    result = await linemq(broker, "seek", "jobs", "g", "earliest")
    assert (result.exit_code, result.stdout) == (0, "seek jobs g 1\n")
    bad = await linemq(broker, "pub", "jobs", "x", "--delay", "soon")
    assert bad.exit_code == 2 and "invalid duration" in bad.stderr
    assert (await linemq(broker, "pub", "jobs", "--id", "x", stdin=b"a\nb\n")).exit_code == 2
    assert (await linemq(broker, "sub", "jobs", "--from", "yesterday")).exit_code == 2
    nope = await linemq(broker, "seek", "jobs", "nope", "1")
    assert (nope.exit_code, nope.stderr) == (1, "ERR no group nope on jobs\n")
