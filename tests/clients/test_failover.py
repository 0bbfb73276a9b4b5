"""A client given several servers moves to another node when its node goes away.

Real in-process brokers on ephemeral ports, each with its own data directory (they share
nothing), over real TCP. A node "restarted elsewhere" is the same data directory served
on another port that the client was given as its second server: what a node on the same
shared store (the PostgreSQL backend) looks like to a client.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from linemq.broker.server.app import Broker
from linemq.clients import (
    Client,
    ConnectionLost,
    ExponentialBackoff,
    OutcomeUnknown,
    Retry,
)
from linemq.clients.sync import SyncClient
from tests.conftest import BrokerFactory, eventually

FAST_RETRY = Retry(ExponentialBackoff(base=0.02, cap=0.1))


def free_port() -> int:
    """A port nothing listens on now, for a node that starts later in the test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def servers(*ports: int) -> str:
    return ",".join(f"127.0.0.1:{p}" for p in ports)


async def node(brokers: BrokerFactory, tmp_path: Path, name: str, port: int = 0) -> Broker:
    return await brokers.start(data_dir=tmp_path / name, port=port)


async def published(port: int, topic: str, *texts: str) -> None:
    async with Client(port=port, reconnect=None) as c:
        for text in texts:
            await c.publish(topic, text)


async def test_client_moves_to_another_node_and_rejoins_its_subscriptions(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    a = await node(brokers, tmp_path, "a")
    b = await node(brokers, tmp_path, "b")
    by_port = {a.port: a, b.port: b}
    client = Client(servers=servers(a.port, b.port), reconnect=FAST_RETRY)
    await client.connect()
    assert client.server is not None
    first = by_port[client.server.port]
    other = b if first is a else a
    jobs = await client.subscribe("jobs", "workers")
    news = await client.subscribe("news")

    await brokers.stop(first)
    await eventually(lambda: client.server is not None and client.server.port == other.port)
    assert client.reconnects == 1
    # Publishing goes on, on the other node; both subscriptions were made again there.
    result = await client.put("jobs", "job-1")
    assert result.offset == 1
    await published(other.port, "news", "hello")
    job = await asyncio.wait_for(jobs.next(), 5)
    assert job.text == "job-1"
    await job.ack()
    assert (await asyncio.wait_for(news.next(), 5)).text == "hello"
    await client.close()


async def test_after_a_loss_the_next_node_in_the_list_is_tried_first(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    nodes = [await node(brokers, tmp_path, name) for name in ("a", "b", "c")]
    ports = [n.port for n in nodes]
    client = Client(servers=servers(*ports), reconnect=FAST_RETRY)
    await client.connect()
    for moves in (1, 2):  # each loss moves on to the node after it, wrapping round
        assert client.server is not None
        lost = ports.index(client.server.port)
        await brokers.stop(nodes[lost])
        nodes[lost] = await node(brokers, tmp_path, "abc"[lost], port=ports[lost])
        await eventually(lambda m=moves: client.reconnects == m and client.server is not None)
        assert client.server is not None and client.server.port == ports[(lost + 1) % 3]
        await client.ping()
    assert client.reconnects == 2
    await client.close()


async def test_a_down_node_in_the_list_costs_no_backoff(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    a = await node(brokers, tmp_path, "a")
    c = await node(brokers, tmp_path, "c")
    slow = Retry(ExponentialBackoff(base=30, cap=30, jitter=False))  # between rounds only
    client = Client(servers=servers(a.port, free_port(), c.port), reconnect=slow)
    await client.connect()
    assert client.server is not None
    first, other = (a, c) if client.server.port == a.port else (c, a)
    await brokers.stop(first)
    await eventually(lambda: client.reconnects == 1 and client.server is not None, timeout=5)
    assert client.server is not None and client.server.port == other.port
    await client.close()


async def test_fanout_resumes_after_the_last_offset_seen_on_a_node_with_the_same_data(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    a = await node(brokers, tmp_path, "shared")
    later = free_port()
    subscriber = Client(servers=servers(later, a.port), reconnect=FAST_RETRY)
    await subscriber.connect()  # whichever it tries first, only a answers
    assert subscriber.server is not None and subscriber.server.port == a.port
    news = await subscriber.subscribe("news")
    await published(a.port, "news", "one", "two")
    assert [(await news.next()).offset for _ in range(2)] == [1, 2]

    await brokers.stop(a)
    b = await node(brokers, tmp_path, "shared", port=later)
    # Published before the subscriber is back: it resumes from offset 3, missing nothing.
    await published(b.port, "news", "three", "four")
    got = [await asyncio.wait_for(news.next(), 5) for _ in range(2)]
    assert [(m.offset, m.text) for m in got] == [(3, "three"), (4, "four")]
    await published(b.port, "news", "five")
    assert (await asyncio.wait_for(news.next(), 5)).text == "five"
    assert subscriber.server is not None and subscriber.server.port == later
    await subscriber.close()


async def test_a_group_message_held_unacked_is_redelivered_after_failover(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    a = await node(brokers, tmp_path, "shared")
    later = free_port()
    member = Client(servers=servers(a.port, later), reconnect=FAST_RETRY)
    await member.connect()
    jobs = await member.subscribe("jobs", "workers")
    await published(a.port, "jobs", "job-1")
    held = await asyncio.wait_for(jobs.next(), 5)

    await brokers.stop(a)
    await node(brokers, tmp_path, "shared", port=later)
    again = await asyncio.wait_for(jobs.next(), 10)
    assert (again.text, again.offset) == ("job-1", held.offset)
    assert again.attempt == 2  # at least once: the first delivery was never acked
    await again.ack()
    async with Client(port=later, reconnect=None) as c:
        (group,) = await c.groups("jobs")
        assert (group.stats["acked"], group.inflight) == (1, 0)
    await member.close()


async def refusing_node(closes_on: bytes) -> tuple[asyncio.Server, list[bytes]]:
    """A node that greets and says hello, then dies on a line starting ``closes_on``."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"OK connected\n")
        while line := await reader.readline():
            seen.append(line)
            if line.startswith(b"HELLO"):
                writer.write(b"OK hello 2\n")
            elif line.startswith(closes_on):
                writer.transport.abort()  # the node dies before it answers
                return

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


async def test_a_publish_with_an_id_is_sent_again_on_the_next_node_and_stored_once(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    dying, seen = await refusing_node(b"PUT")
    later = free_port()
    async with dying:
        client = Client(
            servers=servers(dying.sockets[0].getsockname()[1], later), reconnect=FAST_RETRY
        )
        await client.connect()  # only the dying node is up yet
        b = await node(brokers, tmp_path, "b", port=later)
        result = await asyncio.wait_for(client.put("orders", "pay 42", id="order-42"), 10)
    assert any(line.startswith(b"PUT orders") for line in seen)
    assert (result.offset, result.duplicate) == (1, False)
    assert client.server is not None and client.server.port == b.port
    history = await client.history("orders", 10)
    assert [m.text for m in history] == ["pay 42"]
    await client.close()


async def test_a_publish_without_an_id_has_an_unknown_outcome_and_is_not_sent_again(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    dying, _ = await refusing_node(b"PUT")
    later = free_port()
    async with dying:
        client = Client(
            servers=servers(dying.sockets[0].getsockname()[1], later), reconnect=FAST_RETRY
        )
        await client.connect()  # only the dying node is up yet
        b = await node(brokers, tmp_path, "b", port=later)
        with pytest.raises(OutcomeUnknown, match="may or may not be stored") as caught:
            await client.publish("orders", "pay 42")
    assert isinstance(caught.value, ConnectionLost)  # old handlers still catch it
    assert "with an id" in str(caught.value)
    await eventually(lambda: client.server is not None)
    assert client.server is not None and client.server.port == b.port
    assert await client.history("orders", 10) == []  # the node it moved to never got it
    await client.close()


async def test_connect_tries_every_node_and_says_what_each_did() -> None:
    down = [free_port(), free_port()]
    client = Client(servers=servers(*down), reconnect=None, timeout=1)
    with pytest.raises(ConnectionLost, match="no server took the connection") as caught:
        await client.connect()
    for port in down:
        assert f"127.0.0.1:{port}:" in str(caught.value)


async def test_a_node_that_answers_err_for_a_banner_counts_as_down(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    b = await node(brokers, tmp_path, "b")

    async def too_many(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ERR too many connections\n")
        writer.close()

    refusing = await asyncio.start_server(too_many, "127.0.0.1", 0)
    async with refusing:
        for _ in range(4):  # whichever node the random start picks
            port = refusing.sockets[0].getsockname()[1]
            async with Client(servers=servers(port, b.port), reconnect=None) as c:
                assert c.server is not None and c.server.port == b.port
                await c.ping()


async def test_the_sync_client_fails_over_too(brokers: BrokerFactory, tmp_path: Path) -> None:
    a = await node(brokers, tmp_path, "a")
    b = await node(brokers, tmp_path, "b")
    client = SyncClient(
        servers=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"], reconnect=FAST_RETRY
    )
    await asyncio.to_thread(client.connect)
    server = client.client.server
    assert server is not None
    await brokers.stop(a if server.port == a.port else b)
    result = await asyncio.to_thread(client.put, "t", "after", id="p-1")
    assert result.offset == 1
    assert client.client.server is not None and client.client.server.port != server.port
    await asyncio.to_thread(client.close)


async def test_a_publish_whose_write_fails_is_resent_on_a_new_connection_once_stored(
    brokers: BrokerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket reports the loss to the writer before the reader sees it."""
    a = await node(brokers, tmp_path, "a")
    client = Client(servers=servers(a.port), reconnect=FAST_RETRY)
    await client.connect()
    drain = asyncio.StreamWriter.drain
    failed: list[bool] = []

    async def reset_once(writer: asyncio.StreamWriter) -> None:
        if not failed:
            failed.append(True)
            raise ConnectionResetError("connection reset by peer (injected)")
        await drain(writer)

    monkeypatch.setattr(asyncio.StreamWriter, "drain", reset_once)
    result = await asyncio.wait_for(client.put("orders", "pay 42", id="order-42"), 10)
    assert failed and result.offset == 1  # stored once, whether the first write got there
    assert client.reconnects == 1
    assert [m.text for m in await client.history("orders", 10)] == ["pay 42"]
    await client.close()
