"""``STAT`` lines in the client: the pure parser, ``Client.stats``, and ``linemq stats``."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import pytest

from linemq.broker.protocol.commands import Command, Stats
from linemq.broker.server.app import Broker
from linemq.broker.server.connection import Connection
from linemq.clients import Client
from linemq.clients.protocol import ProtocolError, StatLine, encode_stats, parse_server_line
from linemq.clients.stats_view import StatsSnapshot
from linemq.clients.sync import SyncClient
from tests.conftest import BrokerFactory, eventually
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


def test_stat_lines_parse_into_kind_names_and_numbers() -> None:
    assert parse_server_line(b"STAT broker uptime_seconds=12.5 connections=3\n") == StatLine(
        "broker", (), {"uptime_seconds": 12.5, "connections": 3}
    )
    assert parse_server_line(b"STAT topic jobs published=10 bytes=150\r\n") == StatLine(
        "topic", ("jobs",), {"published": 10, "bytes": 150}
    )
    line = parse_server_line(b"STAT group jobs.eu workers lag=-1 paused=0 new_key=7")
    assert line == StatLine("group", ("jobs.eu", "workers"), {"lag": -1, "paused": 0, "new_key": 7})
    assert isinstance(line, StatLine) and isinstance(line.fields["paused"], int)


@pytest.mark.parametrize("raw", [b"STAT", b"STAT broker x=notanumber", b"STAT a=1 topic"])
def test_malformed_stat_lines_are_protocol_errors(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_server_line(raw)


def test_encode_stats() -> None:
    assert encode_stats() == b"STATS\n"
    assert encode_stats("jobs") == b"STATS jobs\n"
    with pytest.raises(ValueError):
        encode_stats("bad topic")


async def traffic(broker: Broker) -> Wire:
    """Three messages on jobs; the member returned holds the first (keep it open)."""
    consumer = await member(broker.port, "jobs", "workers")
    publisher = await Wire.open(broker.port)
    for i in range(3):
        assert await publisher.cmd(f"PUB jobs job-{i}") == "OK published"
    await next_msg(consumer)
    return consumer


async def test_client_stats_returns_the_stat_lines(broker: Broker) -> None:
    consumer = await traffic(broker)
    async with Client("127.0.0.1", broker.port) as c:
        lines = await c.stats()
        only = await c.stats("jobs")
    assert [(line.kind, line.names) for line in lines] == [
        ("broker", ()),
        ("topic", ("jobs",)),
        ("group", ("jobs", "workers")),
    ]
    snap = StatsSnapshot.from_lines(lines)
    assert snap.broker["published"] == 3
    assert snap.topics["jobs"]["last_offset"] == 3
    assert snap.groups[("jobs", "workers")]["lag"] == 3
    assert snap.groups[("jobs", "workers")]["members"] == 1
    await consumer.close()
    assert StatsSnapshot.from_lines(only).topics.keys() == {"jobs"}


async def test_sync_client_stats(broker: Broker) -> None:
    consumer = await traffic(broker)

    def read() -> list[StatLine]:
        with SyncClient("127.0.0.1", broker.port) as c:
            return c.stats("jobs")

    lines = await asyncio.to_thread(read)
    assert StatsSnapshot.from_lines(lines).topics["jobs"]["published"] == 3
    await consumer.close()


async def linemq_stats(broker: Broker, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from broker.cli import main; main()",
        "stats",
        *args,
        "--port",
        str(broker.port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": ""},
    )


async def test_stats_command_prints_tables_and_json(brokers: BrokerFactory) -> None:
    # The CLI runs as a subprocess, slow to start on a loaded machine: the held message
    # must not time out (and dead-letter) meanwhile, or lag reads 0.
    broker = await brokers.start(ack_timeout=60.0)
    consumer = await traffic(broker)
    proc = await linemq_stats(broker)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    text = out.decode()
    assert "broker" in text and "published 3" in text
    assert "TOPIC" in text and "jobs" in text and "LAG" in text and "workers" in text

    proc = await linemq_stats(broker, "jobs", "--json")
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    snap = json.loads(out)
    assert snap["topics"]["jobs"]["published"] == 3
    (group,) = snap["groups"]
    assert (group["topic"], group["group"], group["members"], group["lag"]) == (
        "jobs",
        "workers",
        1,
        3,
    )
    await consumer.close()


async def test_stats_watch_refreshes_until_ctrl_c(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = 0
    serve_stats = broker.handlers._table[Stats]

    def counted(conn: Connection, cmd: Command) -> None:
        nonlocal served
        served += 1
        serve_stats(conn, cmd)

    monkeypatch.setitem(broker.handlers._table, Stats, counted)
    consumer = await traffic(broker)
    proc = await linemq_stats(broker, "--json", "--watch", "0.1")
    assert proc.stdout is not None
    first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
    publisher = await Wire.open(broker.port)
    assert await publisher.cmd("PUB jobs more") == "OK published"
    while True:
        later = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
        if later["broker"]["published"] == first["broker"]["published"] + 1:
            break
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0

    proc = await linemq_stats(broker, "--watch", "0.1")
    # Ctrl-C once the table is up: a refresh is asked for after the first one is shown
    # (a slow start-up, say on a busy machine, must not be mistaken for a hang).
    before = served
    await eventually(lambda: served >= before + 2, timeout=30)
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err
    assert "workers" in out.decode()
    await consumer.close()
