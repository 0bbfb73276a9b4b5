"""The ``--fsync always`` group commit reports every generation it covers as durable."""

from __future__ import annotations

import asyncio
import threading

from linemq.broker.engine.durability import Durability


class HeldFile:
    """A file whose fsync waits until released (from the test, on the loop)."""

    def __init__(self) -> None:
        self.syncing = threading.Event()
        self.go = threading.Event()
        self.synced = 0

    def sync(self) -> None:
        self.syncing.set()
        self.go.wait(5)
        self.synced += 1


async def test_a_generation_that_wrote_nothing_during_an_fsync_is_durable_after_it() -> None:
    """Generation 2 (an HTTP change that wrote nothing) was committed while generation
    1's fsync ran: once that fsync is done, 2 is durable too, without a later write."""
    durable: list[int] = []
    policy = Durability(asyncio.get_running_loop(), "always", 1000, durable.append)
    held = HeldFile()
    assert not policy.written(1, [held])
    while not held.syncing.is_set():
        await asyncio.sleep(0.005)
    assert not policy.written(2, [])  # the fsync under way may cover what 2 read
    held.go.set()
    for _ in range(200):
        if durable:
            break
        await asyncio.sleep(0.005)
    assert durable == [2] and held.synced == 1


async def test_a_file_written_during_an_fsync_gets_one_of_its_own() -> None:
    durable: list[int] = []
    policy = Durability(asyncio.get_running_loop(), "always", 1000, durable.append)
    first, second = HeldFile(), HeldFile()
    assert not policy.written(1, [first])
    while not first.syncing.is_set():
        await asyncio.sleep(0.005)
    assert not policy.written(2, [second])
    second.go.set()
    first.go.set()
    for _ in range(200):
        if durable[-1:] == [2]:
            break
        await asyncio.sleep(0.005)
    assert durable == [1, 2] and first.synced == second.synced == 1
