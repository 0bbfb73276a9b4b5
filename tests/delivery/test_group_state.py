"""Durable group state: replay rebuilds it, compaction bounds the journal by what is pending."""

from __future__ import annotations

from pathlib import Path

from linemq.broker.delivery.group_state import GroupState, Phase
from linemq.broker.storage.checksum import unseal
from linemq.broker.storage.journal import Journal


def open_state(path: Path) -> GroupState:
    state = GroupState(Journal(path))
    state.load()
    return state


def deliver(state: GroupState, offset: int, attempts: int = 1) -> None:
    p = state.pending_for(offset)
    p.attempts = attempts
    state.delivered([p], 1000.0 + offset)


def test_replay_rebuilds_floor_done_and_pending(tmp_path: Path) -> None:
    path = tmp_path / "g.journal"
    state = open_state(path)
    state.create(1)
    for offset in range(1, 6):
        deliver(state, offset)
    state.acked([1])
    state.acked([2])
    state.acked([4])
    p = state.pending[3]
    p.attempts, p.retry_at, p.reason = 1, 5000.0, "nacked"
    p.phase = Phase.WAITING
    state.failed(p)
    state.journal.write()
    state.journal.close()

    again = open_state(path)
    assert (again.floor, again.cursor) == (3, 6)
    assert set(again.pending) == {3, 5}
    assert again.pending[3].phase is Phase.WAITING and again.pending[3].retry_at == 5000.0
    # In flight when the broker stopped: due again at once, with its attempt kept.
    assert again.pending[5].attempts == 1 and again.pending[5].retry_at == 0.0
    assert again.pending[5].reason == "broker_restart"


async def test_journal_compacts_to_a_size_that_follows_pending(tmp_path: Path) -> None:
    path = tmp_path / "g.journal"
    state = open_state(path)
    state.create(1)
    compactions = 0
    for offset in range(1, 30_001):
        deliver(state, offset)
        if offset % 100 != 0:  # every hundredth stays pending
            state.acked([offset])
            if state.needs_compaction():
                compactions += await state.compact()
        if offset % 500 == 0:
            state.journal.write()
    state.journal.write()
    assert compactions >= 1
    assert path.stat().st_size < 1_000_000
    state.journal.close()
    again = open_state(path)
    assert set(again.pending) == set(range(100, 30_001, 100))
    assert again.floor == 100 and again.cursor == 30_001
    assert again.completed == 30_000 - 300


def test_deliveries_and_acks_read_together_take_a_line_each_and_replay(tmp_path: Path) -> None:
    """A pump's deliveries of consecutive offsets are one journal line, the acks of one
    read are one line, and replay rebuilds the same state as per-message lines."""
    path = tmp_path / "g.journal"
    state = open_state(path)
    state.create(1)
    ps = [state.pending_for(offset) for offset in range(1, 11)]
    for p in ps:
        p.attempts = 2 if p.offset == 6 else 1  # a retry breaks the run
    state.delivered(ps, 1000.5)
    state.acked([1, 3, 5, 6, 7])
    state.acked([9])
    state.journal.write()
    state.journal.close()

    lines = [unseal(line) for line in path.read_bytes().splitlines()]
    assert lines[:3] == [b'{"journal":2}', b'{"e":"start","o":1}', b'{"e":"floor","o":1}']
    assert lines[3:] == [
        b'{"e":"d","o":1,"n":5,"a":1,"t":1000.5}',
        b'{"e":"d","o":6,"a":2,"t":1000.5}',
        b'{"e":"d","o":7,"n":4,"a":1,"t":1000.5}',
        b'{"e":"a","o":[1, 3, 5, 6, 7]}',
        b'{"e":"a","o":9}',
    ]
    again = open_state(path)
    assert set(again.pending) == {2, 4, 8, 10}
    assert again.cursor == 11 and again.acked_count == 6 and again.completed == 6
    assert all(p.attempts == 1 and p.first_ts == 1000.5 for p in again.pending.values())


def test_a_consumers_failure_text_survives_replay_and_compaction(tmp_path: Path) -> None:
    path = tmp_path / "g.journal"
    state = open_state(path)
    state.create(1)
    deliver(state, 1)
    deliver(state, 2)
    for offset, text in ((1, 'db "down"'), (2, "")):
        p = state.pending[offset]
        p.reason, p.error, p.phase = "terminated", text, Phase.WAITING
        state.failed(p)
    state.journal.write()
    state.journal.close()
    again = open_state(path)
    assert [(p.reason, p.error) for p in again.pending.values()] == [
        ("terminated", 'db "down"'),
        ("terminated", ""),
    ]
    again.journal.rewrite_now(again.snapshot_entries())
    again.journal.close()
    snap = open_state(path)
    assert [(p.reason, p.error) for p in snap.pending.values()] == [
        ("terminated", 'db "down"'),
        ("terminated", ""),
    ]
