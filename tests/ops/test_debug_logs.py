"""``--log-level debug`` tells a connection's story; ``info`` adds nothing per connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from linemq.broker.auth import hash_token
from tests.conftest import BrokerProcess, eventually
from tests.server.groupwire import member
from tests.wire import Wire

TOKEN = "log-test-token"
PER_CONNECTION = {"connected", "disconnected", "group_joined", "group_left"}


def users_file(tmp_path: Path) -> Path:
    users = tmp_path / "users.toml"
    users.write_text(
        f'[[users]]\nname = "ops"\ntoken_sha256 = "{hash_token(TOKEN)}"\n'
        'publish = [">"]\nsubscribe = [">"]\n'
    )
    return users


async def a_session_of_each_kind(proc: BrokerProcess) -> None:
    """A QUIT, a client that just closes, a failed and a good AUTH, a join and a leave,
    and a member killed for missing heartbeats."""
    quitter = await Wire.open(proc.port)
    assert await quitter.cmd("AUTH nope") == "ERR auth failed"
    assert await quitter.cmd(f"AUTH {TOKEN}") == "OK authenticated"
    assert await quitter.cmd("SUB jobs workers") == "OK subscribed jobs in group workers"
    assert await quitter.cmd("UNSUB jobs workers") == "OK unsubscribed jobs from group workers"
    assert await quitter.cmd("QUIT") == "OK bye"
    assert await quitter.closed()

    closer = await Wire.open(proc.port)
    assert await closer.cmd(f"AUTH {TOKEN}") == "OK authenticated"
    assert await closer.cmd("SUB mail senders") == "OK subscribed mail in group senders"
    closer.writer.close()

    silent = await Wire.open(proc.port)
    assert await silent.cmd(f"AUTH {TOKEN}") == "OK authenticated"
    assert await silent.cmd("SUB alerts pagers") == "OK subscribed alerts in group pagers"
    assert await silent.closed(timeout=5.0)


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]


async def test_debug_logs_connects_disconnects_auth_and_group_changes(
    broker_process: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    proc = broker_process(
        "--log-level", "debug", "--auth-file", str(users_file(tmp_path)),
        "--heartbeat-timeout", "0.3",
    )  # fmt: skip
    await a_session_of_each_kind(proc)
    await eventually(lambda: len(named(proc.events(), "disconnected")) == 3)
    events = proc.events()

    connected = named(events, "connected")
    assert len(connected) == 3
    assert all(e["level"] == "debug" and e["peer"][0] == "127.0.0.1" for e in connected)
    gone = {e["reason"]: e for e in named(events, "disconnected")}
    assert set(gone) == {"quit", "closed by client", "heartbeat timeout"}
    for event in gone.values():
        assert event["level"] == "debug"
        assert event["user"] == "ops"
        assert 0 <= event["seconds"] < 30
    assert gone["heartbeat timeout"]["seconds"] >= 0.3
    assert gone["closed by client"]["groups"] == [["mail", "senders"]]
    assert gone["quit"]["groups"] == []  # it left before quitting

    assert [e["user"] for e in named(events, "authenticated")] == ["ops"] * 3
    assert len(named(events, "auth_failed")) == 1
    joined = [(e["topic"], e["group"]) for e in named(events, "group_joined")]
    assert joined == [("jobs", "workers"), ("mail", "senders"), ("alerts", "pagers")]
    [left] = named(events, "group_left")
    assert (left["topic"], left["group"], left["left"]) == ("jobs", "workers", True)


async def test_info_logs_nothing_new_per_connection(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--log-level", "info")
    consumer = await member(proc.port, "jobs", "workers")
    assert await consumer.cmd("UNSUB jobs workers") == "OK unsubscribed jobs from group workers"
    assert await consumer.cmd("QUIT") == "OK bye"
    assert await consumer.closed()
    other = await Wire.open(proc.port)
    assert await other.cmd("PING") == "OK pong"
    await other.close()
    watcher = await Wire.open(proc.port)
    while await open_connections(watcher) > 1:  # the broker has seen both go
        await asyncio.sleep(0.01)
    assert not PER_CONNECTION & {e.get("event") for e in proc.events()}
    assert all(e["level"] != "debug" for e in proc.events())


async def open_connections(w: Wire) -> int:
    await w.send("STATS\n")
    lines = await w.until("OK stats end")
    fields = dict(kv.split("=", 1) for kv in lines[0].split(" ")[2:])
    return int(fields["connections"])
