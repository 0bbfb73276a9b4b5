"""Helpers for consumer-group tests: parse MSG lines, ack them, collect deliveries."""

from __future__ import annotations

from dataclasses import dataclass

from tests.wire import Wire


@dataclass(frozen=True)
class Delivery:
    topic: str
    id: str
    offset: int
    ts: float
    text: str


def parse_msg(line: str) -> Delivery:
    kind, topic, id, offset, ts, text = line.split(" ", 5)
    assert kind == "MSG", line
    return Delivery(topic, id, int(offset), float(ts), text)


async def member(port: int, topic: str, group: str) -> Wire:
    w = await Wire.open(port)
    assert await w.cmd(f"SUB {topic} {group}") == f"OK subscribed {topic} in group {group}"
    return w


async def next_msg(w: Wire, timeout: float = 5.0) -> Delivery:
    return parse_msg(await w.line(timeout))
