"""Start-up after junk that is well-formed JSON: a torn write cannot leave it, a bad disk or a
stray writer can. Found by the crash torture's corruption step; the broker must repair or
refuse cleanly, never crash or serve what nobody published."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BrokerProcess
from tests.wire import Wire

StartBroker = Callable[..., BrokerProcess]


async def _publish(port: int, topic: str, texts: list[str]) -> None:
    w = await Wire.open(port)
    for text in texts:
        assert await w.cmd(f"PUB {topic} {text}") == "OK published"
    await w.close()


async def _history(port: int, topic: str) -> list[str]:
    w = await Wire.open(port)
    await w.send(f"HISTORY {topic} 100\n")
    lines = await w.until("OK history end")
    await w.close()
    return lines[:-1]


async def test_torn_tail_and_journal_junk_are_cut_and_logged(
    broker_process: StartBroker, tmp_path: Path
) -> None:
    """The baseline the torture relies on: real torn writes are repaired and reported."""
    b = broker_process()
    member = await Wire.open(b.port)
    assert await member.cmd("SUB t g") == "OK subscribed t in group g"
    await _publish(b.port, "t", ["m1", "m2"])
    b.kill9()
    data = tmp_path / "data"
    torn_record, torn_entry = b'{"id":"msg_1_deadbeef","offset":3,"ts":1.0,"ms', b'{"e":"a","o":'
    with open(data / "topics" / "t" / f"{1:020d}.log", "ab") as f:
        f.write(torn_record)
    with open(data / "groups" / "t" / "g.journal", "ab") as f:
        f.write(torn_entry)
    b = broker_process()
    events = {e["event"]: e for e in b.events() if e.get("level") == "warning"}
    assert events["segment_truncated"]["bytes_dropped"] == len(torn_record)
    assert events["journal_truncated"]["bytes_dropped"] == len(torn_entry)
    await _publish(b.port, "t", ["m3"])
    assert [line.split(" ", 5)[3:6:2] for line in await _history(b.port, "t")] == [
        ["1", "m1"],
        ["2", "m2"],
        ["3", "m3"],
    ]


async def test_journal_line_that_is_json_but_no_event_is_cut_not_fatal(
    broker_process: StartBroker, tmp_path: Path
) -> None:
    b = broker_process()
    member = await Wire.open(b.port)
    assert await member.cmd("SUB t g") == "OK subscribed t in group g"
    await _publish(b.port, "t", ["m1"])
    b.kill9()
    with open(tmp_path / "data" / "groups" / "t" / "g.journal", "ab") as f:
        f.write(b'{"x":1}\n')
    b = broker_process()  # raises RuntimeError: the broker exits with a KeyError traceback
    assert any(e.get("event") == "journal_truncated" for e in b.events())
    member = await Wire.open(b.port)
    assert await member.cmd("SUB t g") == "OK subscribed t in group g"
    assert (await member.line()).split(" ")[3] == "1"


@pytest.mark.parametrize("stray_offset", [7, 2])
async def test_stray_complete_record_with_wrong_offset_is_not_served(
    broker_process: StartBroker, tmp_path: Path, stray_offset: int
) -> None:
    b = broker_process()
    await _publish(b.port, "t", ["m1", "m2"])
    b.kill9()
    stray = {"id": "msg_1_deadbeef", "offset": stray_offset, "ts": 1.0, "msg": "stray"}
    with open(tmp_path / "data" / "topics" / "t" / f"{1:020d}.log", "ab") as f:
        f.write(json.dumps(stray).encode() + b"\n")
    b = broker_process()
    await _publish(b.port, "t", ["m3"])
    offsets_and_texts = [line.split(" ", 5)[3:6:2] for line in await _history(b.port, "t")]
    assert offsets_and_texts == [["1", "m1"], ["2", "m2"], ["3", "m3"]]
