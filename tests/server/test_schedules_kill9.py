"""kill -9 in the middle of a schedule tick: still exactly one message per due time.

A firing publishes first and journals itself once the publish is durable. A broker
killed in between (simulated exactly by cutting the firing's journal line after a
real ``kill -9``: what a crash a moment earlier leaves) fires that due time again on
restart; the dedup index, or for a restart past ``--dedup-window`` a look into the
topic's log, makes that a duplicate and not a second message.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BrokerProcess
from tests.server.v2wire import Frame
from tests.wire import Wire

EVERY = 3.0


async def schedule(port: int, *options: str) -> None:
    w = await Wire.open(port)
    head = " ".join(("SCHEDULE jobs tick 4", *options))
    await w.send(head.encode() + b"\ntock\n")
    assert (await w.line()).startswith("OK scheduled jobs tick next=")
    await w.close()


async def history(port: int) -> list[Frame]:
    """``HISTORY2`` frames of the topic, with their headers (h.due: the firing's due time)."""
    w = await Wire.open(port)
    assert await w.cmd("HELLO 2") == "OK hello 2"
    await w.send("HISTORY jobs 100\n")
    frames = []
    while True:
        head = (await w.line()).split(" ")
        if head[:3] == ["OK", "history", "end"]:
            break
        kind, topic, id, offset, ts, attempt, nbytes, *opts = head
        payload = (await w.reader.readexactly(int(nbytes) + 1))[:-1]
        options = dict(o.split("=", 1) for o in opts)
        frames.append(
            Frame(kind, topic, id, int(offset), float(ts), int(attempt), payload, options)
        )
    await w.close()
    return frames


async def first_delivery(port: int) -> None:
    w = await Wire.open(port)
    assert await w.cmd("SUB jobs") == "OK subscribed jobs"
    assert (await w.line(EVERY + 5)).startswith("MSG jobs ")


def fire_lines(data_dir: Path) -> int:
    path = data_dir / ".schedules"
    return path.read_bytes().count(b'"o":"fire"') if path.exists() else 0


def cut_last_firing(data_dir: Path) -> None:
    """Remove the last firing's journal line: the state of a crash just before it was written."""
    path = data_dir / ".schedules"
    lines = path.read_bytes().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if b'"o":"fire"' in line)
    path.write_bytes(b"".join(lines[:last] + lines[last + 1 :]))


def assert_one_message_per_due_time(frames: list[Frame]) -> None:
    dues = [float(f.options["h.due"]) for f in frames]
    assert len(dues) == len(set(dues)), f"a due time fired twice: {dues}"
    assert dues == sorted(dues)
    assert all(b - a >= EVERY - 0.001 for a, b in itertools.pairwise(dues))


async def test_kill9_right_after_a_firing_gives_no_second_message(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process()
    await schedule(proc.port, f"every={EVERY:g}s")
    await first_delivery(proc.port)
    proc.kill9()  # the firing's journal line may or may not be written yet
    proc = broker_process()
    await asyncio.sleep(EVERY + 0.5)  # the restart's catch-up (if any) and one more due time
    frames = await history(proc.port)
    assert len(frames) >= 2
    assert_one_message_per_due_time(frames)


@pytest.mark.parametrize("window", ["2m", "300ms"], ids=["dedup-index", "past-dedup-window"])
async def test_firing_published_but_not_journaled_is_not_published_again(
    broker_process: Callable[..., BrokerProcess], window: str
) -> None:
    proc = broker_process("--dedup-window", window)
    data_dir = proc.data_dir
    await schedule(proc.port, f"every={EVERY:g}s")
    await first_delivery(proc.port)
    deadline = time.monotonic() + 5
    while fire_lines(data_dir) < 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    proc.kill9()
    cut_last_firing(data_dir)
    await asyncio.sleep(0.4)  # past the short window: only the log can tell
    proc = broker_process("--dedup-window", window, data_dir=data_dir)
    deadline = time.monotonic() + 5
    while fire_lines(data_dir) < 1:  # the restart records the firing it found
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    frames = await history(proc.port)
    assert len(frames) == 1, "the due time published before the crash was published again"
    refired = any(e.get("event") == "schedule_refire_duplicate" for e in proc.events())
    assert refired == (window == "2m")  # past the window the log is read instead
    first_due = float(frames[0].options["h.due"])
    while time.time() < first_due + EVERY + 0.3:  # it goes on at its pace from there
        await asyncio.sleep(0.05)
    frames = await history(proc.port)
    assert len(frames) == 2
    assert_one_message_per_due_time(frames)


async def test_ok_replies_are_durable_across_kill9(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--fsync", "always")
    w = await Wire.open(proc.port)
    for name, topic in [("keep", "jobs"), ("gone", "jobs"), ("doomed", "scratch")]:
        await w.send(f"SCHEDULE {topic} {name} 1 every=1h\nx\n".encode())
        assert (await w.line()).startswith(f"OK scheduled {topic} {name} ")
    assert await w.cmd("PUB scratch x") == "OK published"
    assert await w.cmd("UNSCHEDULE jobs gone") == "OK unscheduled jobs gone"
    assert await w.cmd("DELETE scratch") == "OK deleted scratch"
    proc.kill9()
    proc = broker_process(data_dir=proc.data_dir)
    w = await Wire.open(proc.port)
    await w.send("SCHEDULES\n")
    lines = await w.until("OK schedules end")
    assert [line.split()[1:3] for line in lines[:-1]] == [["jobs", "keep"]]
    await w.close()
