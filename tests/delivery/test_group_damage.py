"""Damaged group journals: whatever a bad byte hits, no unacked message is ever skipped."""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import linemq.broker.storage.journal as journal_module
from linemq.broker.delivery.lifecycle import GroupState, Phase
from linemq.broker.storage.checksum import unseal
from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.journal import Journal
from linemq.broker.storage.records import Record


def open_state(path: Path, fallback: int = 1, report: DamageReport | None = None) -> GroupState:
    state = GroupState(Journal(path, damage=report))
    state.load(fallback)
    return state


class Model:
    """A group driven the way ConsumerGroup drives it, with the truth kept on the side."""

    def __init__(self, path: Path, start: int) -> None:
        self.state = open_state(path)
        self.state.create(start)
        self.start = start
        self.done: set[int] = set()

    def take_and_deliver(self, n: int, ts: float) -> None:
        first = self.state.cursor
        records = [Record(o, f"id{o}", ts, "m") for o in range(first, first + n)]
        ps = self.state.take(records)
        for p in ps:
            p.attempts = 1
        self.state.deliver(ps, ts)

    def ack(self, offsets: list[int]) -> None:
        offsets = [o for o in offsets if o in self.state.pending]
        if offsets:
            self.state.ack(offsets)
            self.done.update(offsets)

    def fail(self, offset: int) -> None:
        p = self.state.pending.get(offset)
        if p is not None:
            p.attempts += 1
            p.retry_at = 5.0
            p.phase = Phase.WAITING
            self.state.retry(p)

    def dead(self, offset: int) -> None:
        if offset in self.state.pending:
            self.state.dead_letter(offset)
            self.state.pending.pop(offset, None)
            self.done.add(offset)

    def snapshot(self) -> None:
        self.state.journal.write()
        self.state.journal.rewrite_now(self.state.snapshot_entries())

    def close(self) -> None:
        self.state.journal.write()
        self.state.journal.close()

    def assert_nothing_skipped(self, again: GroupState) -> None:
        """Every offset taken and not done is pending or at/after the cursor: delivered again."""
        assert all(o < again.cursor for o in again.pending)  # the cursor is past what is held
        for offset in range(self.start, self.state.cursor):
            if offset not in self.done:
                assert offset in again.pending or offset >= again.cursor, offset


def build(path: Path, seed: int, start: int = 1) -> Model:
    rng = random.Random(seed)
    model = Model(path, start)
    for step in range(rng.randint(3, 40)):
        roll = rng.random()
        if roll < 0.4:
            model.take_and_deliver(rng.randint(1, 6), 1000.0 + step)
        elif roll < 0.7 and model.state.pending:
            pending = sorted(model.state.pending)
            model.ack(rng.sample(pending, min(len(pending), rng.randint(1, 3))))
        elif roll < 0.8 and model.state.pending:
            model.fail(rng.choice(sorted(model.state.pending)))
        elif roll < 0.85 and model.state.pending:
            model.dead(rng.choice(sorted(model.state.pending)))
        elif roll < 0.9:
            model.snapshot()
        model.state.journal.write()
    model.close()
    return model


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), max_size=4),
    cut=st.integers(0, 40),
)
def test_random_damage_never_skips_and_never_raises(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    flips: list[tuple[float, int]],
    cut: int,
) -> None:
    path = tmp_path_factory.mktemp("g") / "g.journal"
    model = build(path, seed, start=1 + seed % 50)
    data = bytearray(path.read_bytes())
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    path.write_bytes(bytes(data[: len(data) - min(cut, len(data))]))  # and a lost tail
    again = open_state(path, fallback=1)  # the topic's first offset
    model.assert_nothing_skipped(again)
    # The state was written back: a second start finds no damage and the same state.
    report = DamageReport()
    third = open_state(path, fallback=1, report=report)
    assert report.counts()["journal_line"] == 0
    assert third.cursor == again.cursor and set(third.pending) == set(again.pending)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_bad_first_lines_fall_back_to_redelivery_not_to_latest(tmp_path: Path) -> None:
    """Today a bad first line made the group restart at "latest": its backlog was lost."""
    path = tmp_path / "g.journal"
    model = Model(path, 40)
    model.take_and_deliver(5, 1000.0)
    model.ack([40, 41])
    model.close()
    lines = lines_of(path)
    assert unseal(lines[1]) == b'{"e":"start","o":40}'
    lines[1] = lines[1].replace(b"start", b"stxrt")  # one line saying where: the other holds
    path.write_bytes(b"".join(lines))
    report = DamageReport()
    again = open_state(path, fallback=1, report=report)
    assert report.counts()["journal_line"] == 1
    assert again.cursor == 45 and set(again.pending) == {42, 43, 44}
    lines[2] = b"\0" * len(lines[2])  # both lost: start over at the topic's first offset
    path.write_bytes(b"".join(lines))
    again = open_state(path, fallback=1)
    assert again.cursor == 45 and set(again.pending) == set(range(1, 40)) | {42, 43, 44}


def test_a_damaged_cursor_digit_skips_nothing(tmp_path: Path) -> None:
    """A digit changed in a ``t`` line still parses: only its check tells. Then the next
    ``t`` line must not move the cursor past the offsets the lost line took."""
    path = tmp_path / "g.journal"
    model = Model(path, 1)
    model.take_and_deliver(3, 1000.0)
    model.take_and_deliver(3, 1001.0)  # offsets 4..6: the line that gets damaged
    model.take_and_deliver(3, 1002.0)
    model.ack([1, 2, 3, 7, 8, 9])
    model.close()
    data = path.read_bytes()
    target = b'{"e":"t","o":4,"n":3,'
    assert data.count(target) == 1
    path.write_bytes(data.replace(target, b'{"e":"t","o":4,"n":9,'))
    again = open_state(path)
    assert again.cursor == 10 and set(again.pending) == {4, 5, 6}


def test_an_earlier_format_snapshot_with_a_damaged_field_does_not_stop_anything(
    tmp_path: Path,
) -> None:
    """Format 1 has no checks: a snapshot whose phase reads "waitinf" raised at start."""
    path = tmp_path / "g.journal"
    snap = {
        "e": "snap",
        "start": 1,
        "cursor": 11,
        "completed": 7,
        "dead": 0,
        "pending": [[8, 1, 1.0, 1.0, 0.0, "", "waitinf"], [9, 1, 1.0, 1.0, 0.0, "", "in_flight"]],
    }
    path.write_bytes(orjson.dumps(snap) + b'\n{"e":"t","o":11,"n":2}\n{"e":"a","o":11}\n')
    again = open_state(path, fallback=1)
    # 12 was taken ahead and never delivered: it goes back to the log (the cursor).
    assert again.cursor == 12
    assert set(again.pending) >= {8, 9}  # never skipped (1..10 come again: floor unknown)
    assert Journal(path).replay()[0] == {"e": "floor", "o": 1}  # rewritten in format 2


def test_a_lost_snapshot_falls_back_to_its_floor(tmp_path: Path) -> None:
    path = tmp_path / "g.journal"
    model = Model(path, 1)
    for _ in range(4):
        model.take_and_deliver(5, 1000.0)
    model.ack([o for o in range(1, 21) if o not in (7, 15)])
    model.snapshot()
    model.take_and_deliver(2, 1001.0)
    model.close()
    lines = lines_of(path)
    assert unseal(lines[1]) == b'{"e":"floor","o":7}'
    assert lines[2].startswith(b'{"e":"snap"')
    lines[2] = lines[2].replace(b"in_flight", b"waitinf", 1)
    path.write_bytes(b"".join(lines))
    again = open_state(path)
    assert again.cursor == 23
    assert set(again.pending) == set(range(7, 23))  # 8..14, 16..20 again: never 7 or 15 lost


class Crash(BaseException):
    """The process dies here."""


@pytest.mark.parametrize("step", ["write", "fsync", "replace", "after_replace"])
async def test_a_crash_at_any_step_of_a_snapshot_leaves_a_whole_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    path = tmp_path / "g.journal"
    model = Model(path, 1)
    model.take_and_deliver(6, 1000.0)
    model.ack([1, 2, 4])
    model.state.journal.write()
    before = path.read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise Crash(step)

    if step == "write":

        def half(fd: int, data: bytes) -> None:
            os.write(fd, data[: len(data) // 2])
            raise Crash(step)

        monkeypatch.setattr(journal_module, "write_all", half)
    elif step == "fsync":
        monkeypatch.setattr(journal_module.os, "fsync", crash)
    elif step == "replace":
        monkeypatch.setattr(journal_module.os, "replace", crash)
    else:
        real_replace = os.replace

        def replace_then_crash(src: str, dst: str) -> None:
            real_replace(src, dst)
            raise Crash(step)

        monkeypatch.setattr(journal_module.os, "replace", replace_then_crash)
    with pytest.raises(Crash):
        await model.state.compact()
    monkeypatch.undo()
    if step != "after_replace":
        assert path.read_bytes() == before
    report = DamageReport()
    again = open_state(path, report=report)
    assert report.counts()["journal_line"] == 0
    assert again.cursor == 7 and set(again.pending) == {3, 5, 6}
    assert [p.name for p in tmp_path.iterdir()] == ["g.journal"]  # the temporary file is gone
