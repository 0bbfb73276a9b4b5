"""`linemq verify`: what it prints and its exit code on a real broker's data dir, and --repair."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from linemq.broker.cli import main
from tests.conftest import BrokerFactory
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


async def _data_dir(brokers: BrokerFactory) -> Path:
    """Two topics, a group with an ack: what a stopped broker leaves."""
    broker = await brokers.start(max_inflight=1)
    consumer = await member(broker.port, "jobs", "workers")
    publisher = await Wire.open(broker.port)
    for i in range(20):
        assert await publisher.cmd(f"PUB jobs job-{i}") == "OK published"
        assert await publisher.cmd(f"PUB news item-{i}") == "OK published"
    delivery = await next_msg(consumer)
    assert await consumer.cmd(f"ACK {delivery.id}") == "OK ack_received"
    await next_msg(consumer)  # the next one, in flight when the broker stops
    await brokers.stop(broker)
    return brokers.data_dir


def _verify(data: Path, *args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["verify", "--data-dir", str(data), *args])
    return result.exit_code, result.output.splitlines()


async def test_a_clean_data_dir_verifies_with_exit_0(brokers: BrokerFactory) -> None:
    data = await _data_dir(brokers)
    code, lines = _verify(data)
    assert (code, lines) == (0, [f"{data}: no damage"])


async def test_damage_is_listed_with_its_place_and_exit_1(brokers: BrokerFactory) -> None:
    data = await _data_dir(brokers)
    segment = next((data / "topics" / "news").glob("*.log"))
    raw = segment.read_bytes()
    segment.write_bytes(raw.replace(b"item-7", b"item-X"))  # a changed byte in one record
    journal = data / "groups" / "jobs" / "workers.journal"
    lines = journal.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"o":', b'"o":9', 1)  # a digit that still parses
    journal.write_bytes(b"\n".join(lines))
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}

    code, out = _verify(data)
    assert code == 1
    (record,) = [line for line in out if str(segment) in line]
    assert "record" in record and "topic news" in record and "offset 8" in record
    assert any(str(journal) in line and "journal_line" in line for line in out)
    assert out[-1].startswith(f"{data}: ") and "1 record" in out[-1]
    assert {p: p.read_bytes() for p in before} == before  # nothing changed without --repair

    code, out = _verify(data, "--json")
    found = [json.loads(line) for line in out]
    assert {"kind": "record", "topic": "news", "first": 8} | found[0] == found[0]


async def test_repair_does_what_a_start_would_and_says_so(brokers: BrokerFactory) -> None:
    data = await _data_dir(brokers)
    segment = max((data / "topics" / "jobs").glob("*.log"))
    with segment.open("ab") as f:
        f.write(b'{"id":"msg_1_deadbeef","offset":21,"ts":1.0,"ms')  # a torn write
    code, out = _verify(data)
    assert code == 1 and any("torn" in line for line in out)
    code, out = _verify(data, "--repair")
    assert any(line.startswith("repaired (topic logs): ") for line in out)
    code, out = _verify(data)
    assert (code, out) == (0, [f"{data}: no damage"])
