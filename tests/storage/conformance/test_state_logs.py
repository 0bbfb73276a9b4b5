"""What every ``EventLog`` promises, whatever keeps it (storage/state_store.py): entries
replay in append order once written, a snapshot replaces what came before and keeps
what was appended meanwhile, a deleted log stays gone, damage costs one entry."""

from __future__ import annotations

import asyncio

import pytest

from linemq.broker.storage.checksum import seal
from linemq.broker.storage.state_store import EventLog, StateStore
from tests.storage.conformance.state_kits import StateKit


def test_every_state_store_implements_the_seam(state_kit: StateKit) -> None:
    opened = state_kit.open()
    assert isinstance(opened.store, StateStore)
    for log in (
        opened.store.group_log("t", "g"),
        opened.store.patterns_log(),
        opened.store.replay_log("t"),
        opened.store.schedules_log(),
    ):
        assert isinstance(log, EventLog)
    opened.store.close()


def test_written_entries_replay_in_append_order_after_a_restart(state_kit: StateKit) -> None:
    opened = state_kit.open()
    log = opened.store.group_log("orders", "billing")
    assert log.replay() == [], "a new log is empty"
    log.append({"n": 1})
    log.append_line(seal(b'{"n":2}') + seal(b'{"n":3}'))  # a hot path's lines, sealed
    opened.tick()
    log.append({"n": 4})
    opened.tick()
    opened.store.close()

    again = state_kit.open()
    replayed = again.store.group_log("orders", "billing").replay()
    assert replayed == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    again.store.close()


def test_a_log_says_once_that_it_has_something_to_write(state_kit: StateKit) -> None:
    opened = state_kit.open()
    log = opened.store.group_log("t", "g")
    for n in range(5):
        log.append({"n": n})
    assert opened.told == 1 and log.has_pending, "one notice per tick, however many entries"
    opened.tick()
    assert not log.has_pending
    log.append({"n": 5})
    assert opened.told == 2
    opened.store.close()


def test_what_was_only_buffered_is_lost_in_a_crash(state_kit: StateKit) -> None:
    """The tick's write is what stores an entry: a crash before it loses the entry,
    never one written before it."""
    opened = state_kit.open()
    log = opened.store.group_log("t", "g")
    log.append({"n": 1})
    opened.tick()
    log.append({"n": 2})  # never written: the process dies here (no close)

    again = state_kit.open()
    assert again.store.group_log("t", "g").replay() == [{"n": 1}]
    again.store.close()


def test_close_writes_what_is_buffered(state_kit: StateKit) -> None:
    opened = state_kit.open()
    log = opened.store.schedules_log()
    log.append({"job": "a"})
    opened.store.close()
    again = state_kit.open()
    assert again.store.schedules_log().replay() == [{"job": "a"}]
    again.store.close()


def test_exists_once_written_and_not_after_delete(state_kit: StateKit) -> None:
    opened = state_kit.open()
    log = opened.store.patterns_log()
    assert not log.exists(), "nothing is stored before anything is written"
    log.append({"p": "a.*", "g": "g"})
    opened.tick()
    assert log.exists()
    opened.store.close()
    assert state_kit.open().store.patterns_log().exists()


def test_rewrite_now_replaces_the_log_by_a_snapshot(state_kit: StateKit) -> None:
    opened = state_kit.open()
    log = opened.store.group_log("t", "g")
    for n in range(50):
        log.append({"n": n, "pad": "x" * 40})
    opened.tick()
    grown = log.size
    log.rewrite_now([{"snapshot": 50}])
    assert log.size < grown, "the snapshot is smaller than the entries it replaces"
    assert not log.needs_rewrite
    log.append({"n": 50})
    opened.tick()
    opened.store.close()
    again = state_kit.open()
    assert again.store.group_log("t", "g").replay() == [{"snapshot": 50}, {"n": 50}]
    again.store.close()


async def test_appends_during_a_rewrite_follow_the_snapshot(state_kit: StateKit) -> None:
    """Compaction runs while the log is in use: what is appended and written meanwhile
    is kept after the snapshot, once, and nothing before it survives it."""
    opened = state_kit.open()
    log = opened.store.group_log("t", "g")
    log.append({"n": 0})
    opened.tick()
    log.append({"n": 1})  # buffered: the snapshot below covers it
    rewrite = asyncio.create_task(log.rewrite_off_loop([{"snapshot": 1}]))
    await asyncio.sleep(0)  # the rewrite has begun
    log.append({"n": 2})
    opened.tick()
    assert await rewrite
    log.append({"n": 3})
    opened.tick()
    assert log.replay() == [{"snapshot": 1}, {"n": 2}, {"n": 3}]
    opened.store.close()
    again = state_kit.open()
    assert again.store.group_log("t", "g").replay() == [{"snapshot": 1}, {"n": 2}, {"n": 3}]
    again.store.close()


async def test_a_deleted_log_stays_gone(state_kit: StateKit) -> None:
    opened = state_kit.open()
    log = opened.store.replay_log("t")
    log.append({"dlq": 1})
    opened.tick()
    log.delete()
    assert not log.exists()
    log.append({"dlq": 2})  # a task of its owner still finishing
    opened.tick()
    assert not log.exists(), "a late append never brings a deleted log back"
    assert not await log.rewrite_off_loop([{"dlq": 3}])
    assert not log.exists()
    opened.store.close()
    assert state_kit.open().store.replay_log("t").replay() == []


def test_replay_lines_keeps_the_owners_check(state_kit: StateKit) -> None:
    """An entry the owner's check refuses counts as damage: ``None`` in its place, the
    rest replayed, and the log asks for a fresh snapshot."""
    opened = state_kit.open()
    log = opened.store.group_log("t", "g")
    for entry in ({"e": "ok", "n": 1}, {"bogus": True}, {"e": "ok", "n": 2}):
        log.append(entry)
    opened.tick()
    lines = log.replay_lines(lambda e: e.get("e") == "ok")
    assert lines == [{"e": "ok", "n": 1}, None, {"e": "ok", "n": 2}]
    assert log.needs_rewrite
    assert state_kit.damage.counts()["journal_line"] == 1
    log.rewrite_now([e for e in lines if e is not None])
    assert not log.needs_rewrite
    opened.store.close()


def test_a_damaged_entry_costs_that_entry_alone(state_kit: StateKit) -> None:
    """Damage in the stored bytes (a flipped byte on disk) is reported, not fatal."""
    if state_kit.path_of is None:
        pytest.skip(f"nothing outside the broker can damage a {state_kit.name} store's data")
    opened = state_kit.open()
    log = opened.store.group_log("t", "g")
    for n in range(3):
        log.append({"n": n})
    opened.tick()
    opened.store.close()
    path = state_kit.path_of(log)
    data = path.read_bytes()
    digit = data.index(b'"n":1') + 4
    path.write_bytes(data[:digit] + b"7" + data[digit + 1 :])  # fails its check now

    again = state_kit.open()
    damaged = again.store.group_log("t", "g")
    assert damaged.replay_lines() == [{"n": 0}, None, {"n": 2}]
    assert damaged.needs_rewrite
    assert state_kit.damage.counts()["journal_line"] == 1
    again.store.close()
