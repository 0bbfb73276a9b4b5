"""A message's life in a group, without sockets: every transition, and replay after each.

Each test drives ``GroupState`` the way ``ConsumerGroup`` does (rows in a member's
holdings for what is in flight), then opens the journal again: replay must give
the same messages in the same states, except that what was in flight is waiting
again (the broker stopped while it was out), its attempts kept. A snapshot
(compaction) must replay to the same too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linemq.broker.delivery.holdings import Holdings
from linemq.broker.delivery.lifecycle import GroupState, Pending, Phase
from linemq.broker.protocol.filters import parse_filter
from linemq.broker.storage.journal import Journal
from linemq.broker.storage.records import Meta, Record

View = dict[str, Any]


class Driver:
    """One member's holdings and the group state, moved as ``ConsumerGroup`` moves them."""

    def __init__(self, path: Path, start: int = 1) -> None:
        self.path = path
        self.state = GroupState(Journal(path))
        assert not self.state.load()
        self.state.create(start)
        self.holdings = Holdings()
        self.state.holdings.append(self.holdings)
        self.clock = 1000.0

    def take(self, n: int, meta: Meta | None = None) -> list[Pending]:
        first = self.state.cursor
        return self.state.take(
            [Record(o, f"msg_{o:09d}", 1.0, "m", meta) for o in range(first, first + n)]
        )

    def deliver(self, ps: list[Pending]) -> None:
        self.clock += 1
        for p in ps:
            p.attempts += 1
        self.state.deliver(ps, self.clock)
        ids = [p.record.id if p.record else f"msg_{p.offset:09d}" for p in ps]
        self.holdings.add(ids, [p.offset for p in ps], self.clock, self.clock + 30)
        self.state.hold(ps)

    def ack(self, *offsets: int) -> None:
        got = [self.holdings.ack(f"msg_{o:09d}".encode()) for o in offsets]
        assert got == list(offsets)
        self.state.ack(got)

    def unhold(self, offset: int) -> Pending:
        row = self.holdings.find(f"msg_{offset:09d}".encode())
        ((got, _id, sent, _deadline),) = self.holdings.take([row])
        return self.state.unhold(got, sent)

    def retry(
        self, offset: int, at: float, why: str, error: str = "", *, failed: bool = False
    ) -> Pending:
        p = self.unhold(offset)
        p.retry_at, p.reason, p.error = at, why, error
        self.state.retry(p, failed)
        return p

    def replayed(self) -> GroupState:
        """The state a restart would find (from a copy: a replay may rewrite its file)."""
        self.state.journal.write()
        copy = self.path.with_name("copy.journal")
        shutil.copyfile(self.path, copy)
        again = GroupState(Journal(copy))
        assert again.load()
        again.journal.close()
        copy.unlink()
        return again

    def compacted(self) -> GroupState:
        self.state.journal.write()
        self.state.journal.rewrite_now(self.state.snapshot_entries())
        return self.replayed()


def view(state: GroupState) -> View:
    """What a user can learn of the state: each message's state, and the figures."""
    messages: dict[int, tuple[object, ...]] = {}
    for offset, p in state.pending.items():
        messages[offset] = (p.phase.value, p.attempts, p.retry_at, p.reason, p.error, p.first_ts)
    for h in state.holdings:
        for row in h.rows():
            offset = h.offsets[row]
            p = state.history.get(offset)
            attempts, reason, error = (1, "", "") if p is None else (p.attempts, p.reason, p.error)
            messages[offset] = ("in_flight", attempts, 0.0, reason, error, 1.0)
    return {
        "cursor": state.cursor,
        "messages": messages,
        "acked": state.acked_count,
        "dead": state.dead,
        "expired": state.expired_count,
        "dropped": state.dropped,
        "paused": state.paused,
        "ordering": state.ordering,
        "failures": dict(state.failures),
        "filter": state.filter,
        "filtered": state.filtered_count,
    }


def restarted(v: View) -> View:
    """``v`` after a restart: what was in flight waits, due at once, its attempts kept; what
    was read ahead and never delivered, just below the cursor, is back in the log."""
    messages = {
        o: ("waiting", a, 0.0, why or "broker_restart", err, 1.0) if phase == "in_flight" else m
        for o, m in v["messages"].items()
        for phase, a, _at, why, err, _ts in [m]
    }
    cursor = v["cursor"]
    while (m := messages.get(cursor - 1)) is not None and not (m[1] or m[5]):
        del messages[cursor - 1]
        cursor -= 1
    return {**v, "messages": messages, "cursor": cursor}


def comparable(v: View) -> View:
    """First delivery times only say whether there was one (a row keeps its own)."""
    messages = {o: (*m[:5], bool(m[5])) for o, m in v["messages"].items()}
    return {**v, "messages": messages}


def assert_replays(d: Driver, *, compact: bool = True) -> None:
    expected = comparable(restarted(view(d.state)))
    assert comparable(view(d.replayed())) == expected
    if compact:
        assert comparable(view(d.compacted())) == expected


@pytest.fixture
def d(tmp_path: Path) -> Driver:
    return Driver(tmp_path / "g.journal")


def test_take_makes_waiting_and_a_restart_gives_the_read_ahead_back(d: Driver) -> None:
    d.take(3)
    assert view(d.state)["messages"] == {o: ("waiting", 0, 0.0, "", "", 0.0) for o in (1, 2, 3)}
    again = d.replayed()
    assert again.pending == {} and again.cursor == 1  # never delivered: back to the log


def test_deliver_makes_rows_and_a_restart_makes_them_waiting(d: Driver) -> None:
    d.deliver(d.take(4))
    assert d.state.pending == {} and d.state.inflight == 4 and d.state.cursor == 5
    assert_replays(d)
    assert view(d.replayed())["messages"][1][:5] == ("waiting", 1, 0.0, "broker_restart", "")


def test_ack_is_done_and_stays_done(d: Driver) -> None:
    d.deliver(d.take(5))
    d.ack(1)
    d.ack(3, 4)
    assert d.state.inflight == 2 and d.state.acked_count == 3
    assert_replays(d)
    assert set(d.replayed().pending) == {2, 5}


def test_nack_with_a_delay_waits_until_then_with_its_reason(d: Driver) -> None:
    d.deliver(d.take(2))
    d.retry(2, at=5000.0, why="nacked", error='db "down"')
    assert view(d.state)["messages"][2][:5] == ("waiting", 1, 5000.0, "nacked", 'db "down"')
    assert_replays(d)


def test_a_redelivery_keeps_its_history_while_in_flight(d: Driver) -> None:
    d.deliver(d.take(1))
    p = d.retry(1, at=0.0, why="ack_timeout")
    d.deliver([p])
    assert d.state.history[1] is p and view(d.state)["messages"][1][:2] == ("in_flight", 2)
    assert p.first_ts == 1001.0 and p.last_ts == 1002.0
    assert_replays(d)
    assert view(d.replayed())["messages"][1][:5] == ("waiting", 2, 0.0, "ack_timeout", "")


def test_timeout_then_dead_letter_is_done_and_counted(d: Driver) -> None:
    d.deliver(d.take(2))
    p = d.retry(1, at=0.0, why="ack_timeout")
    d.state.dead_letter(p.offset)
    assert 1 not in view(d.state)["messages"] and d.state.dead == 1
    assert_replays(d)


def test_term_is_a_retry_marked_terminated_then_a_dead_letter(d: Driver) -> None:
    d.deliver(d.take(2))
    d.retry(2, at=0.0, why="terminated", error="bad input")
    assert_replays(d)  # a crash here: the next delivery dead-letters it (ConsumerGroup)
    d.state.dead_letter(2)
    assert d.state.dead == 1
    assert_replays(d)


def test_failures_are_counted_by_the_lines_that_record_them(d: Driver) -> None:
    d.deliver(d.take(4))
    d.retry(1, at=0.0, why="nacked", failed=True)
    d.retry(2, at=0.0, why="ack_timeout", failed=True)
    d.retry(3, at=0.0, why="terminated", error="bad", failed=True)
    d.state.dead_letter(3)  # the TERM's letter: counted by its retry already
    d.state.dead_letter(d.unhold(4).offset, "consumer_dead")  # the last attempt failed
    d.deliver([d.state.pending[1]])
    d.retry(1, at=0.0, why="nacked")  # a clean leave: a retry that is no failure
    counts = {"nacked": 1, "ack_timeout": 1, "terminated": 1, "consumer_dead": 1}
    assert d.state.failures == counts
    assert_replays(d)
    assert d.replayed().failures == counts == d.compacted().failures


def test_failures_count_on_after_a_snapshot(d: Driver) -> None:
    d.deliver(d.take(2))
    d.retry(1, at=0.0, why="nacked", failed=True)
    d.compacted()  # the journal is now one snapshot, with the counts in it
    d.retry(2, at=0.0, why="nacked", failed=True)
    assert d.replayed().failures == {"nacked": 2}
    assert_replays(d)


def test_expire_and_gone_finish_waiting_messages(d: Driver) -> None:
    ps = d.take(3)
    d.deliver(ps[2:])
    d.state.expire(1)
    d.state.gone(2)
    assert (d.state.expired_count, d.state.dropped, d.state.pending) == (1, 1, {})
    assert_replays(d)


def test_skip_counts_what_was_deleted_before_it_was_taken(d: Driver) -> None:
    d.state.skip_to(7)
    assert (d.state.cursor, d.state.dropped) == (7, 6)
    assert_replays(d)


def test_seek_forgets_everything_pending(d: Driver) -> None:
    d.deliver(d.take(3))
    for offset in (1, 2, 3):
        d.unhold(offset)
    d.state.seek(2)
    assert view(d.state)["messages"] == {} and d.state.cursor == 2
    assert_replays(d)


def test_pause_survives_replay(d: Driver) -> None:
    d.state.set_paused(True)
    assert_replays(d)
    assert d.replayed().paused


def test_fifo_ordering_survives_replay_and_compaction(d: Driver) -> None:
    d.state.set_ordering("fifo")
    d.deliver(d.take(1))
    assert_replays(d)
    assert d.replayed().ordering == "fifo"


def test_a_filter_and_what_it_passed_over_survive_replay_and_compaction(d: Driver) -> None:
    header_filter = parse_filter(["h.type=email|sms"])
    d.state.set_filter(header_filter)
    first = d.state.cursor
    kinds = ["push", "email", None, None, "sms", "push"]
    records = [
        Record(
            first + i, f"msg_{first + i:09d}", 1.0, "m", Meta(headers={"type": k}) if k else None
        )
        for i, k in enumerate(kinds)
    ]
    ps = d.state.take_filtered(records, header_filter)
    assert [p.offset for p in ps] == [2, 5]
    assert (d.state.filtered_count, d.state.cursor, sorted(d.state.pending)) == (4, 7, [2, 5])
    d.deliver(ps[:1])
    assert_replays(d)
    again = d.compacted()
    assert (again.filter, again.filtered_count) == (header_filter, 4)
    # 5 was read ahead and never delivered; 6 above it is done, so it stays taken (and
    # matches: it is delivered after a restart like any message waiting).
    assert sorted(again.pending) == [2, 5]
    assert d.state.take_filtered(records[:1], header_filter) == []  # a whole batch filtered


def test_keyed_messages_keep_their_meta_in_flight_for_the_release(d: Driver) -> None:
    ps = d.take(2, Meta(key="k"))
    d.deliver(ps)
    assert set(d.state.history) == {1, 2}
    released = d.state.ack([d.holdings.ack(b"msg_000000001")])
    assert [p.meta.key for p in released if p.meta] == ["k"]
    assert_replays(d)


def test_take_and_deliver_is_take_then_deliver(tmp_path: Path) -> None:
    a, b = Driver(tmp_path / "a.journal"), Driver(tmp_path / "b.journal")
    a.deliver(a.take(3))
    b.state.take_and_deliver(1, 3, 1001.0)
    b.holdings.add([f"msg_{o:09d}" for o in (1, 2, 3)], [1, 2, 3], 1001.0, 1031.0)
    assert view(a.state) == view(b.state)
    assert view(a.replayed()) == view(b.replayed())


def test_old_journal_lines_replay(tmp_path: Path) -> None:
    """Lines as every release since format 2 wrote them (one ack per line, ``n``-less
    deliveries, retries without ``err``) replay through the same transitions."""
    path = tmp_path / "g.journal"
    lines = [
        {"e": "start", "o": 1},
        {"e": "floor", "o": 1},
        {"e": "t", "o": 1, "n": 3},
        {"e": "d", "o": 1, "a": 1, "t": 1001.0},
        {"e": "d", "o": 2, "a": 1, "t": 1001.0},
        {"e": "a", "o": 1},
        {"e": "r", "o": 2, "a": 1, "at": 0.0, "why": "nacked"},
        {"e": "x", "o": 2},
    ]
    journal = Journal(path)
    for line in lines:
        journal.append(line)
    journal.write()
    journal.close()
    state = GroupState(Journal(path))
    assert state.load()
    # 3 was read ahead and never delivered: it goes back to the log.
    assert (state.cursor, state.acked_count, state.dead, state.pending) == (3, 1, 1, {})
    # Lines of that release do not say which retry was a failure: counted from 0.
    assert state.failures == {}


def test_a_snapshot_of_an_earlier_release_replays_with_no_failures(tmp_path: Path) -> None:
    path = tmp_path / "g.journal"
    journal = Journal(path)
    journal.append({"e": "floor", "o": 5})
    snap = {"e": "snap", "start": 1, "cursor": 5, "completed": 4, "dead": 1, "pending": []}
    journal.append({**snap, "acked": 3, "paused": False})
    journal.append({"e": "t", "o": 5, "n": 1})
    journal.append({"e": "d", "o": 5, "a": 1, "t": 1001.0})
    journal.append({"e": "r", "o": 5, "a": 1, "at": 0.0, "why": "nacked", "f": "nacked"})
    journal.write()
    journal.close()
    state = GroupState(Journal(path))
    assert state.load()
    assert (state.acked_count, state.dead, state.failures) == (3, 1, {"nacked": 1})


def test_replay_leaves_nothing_in_flight(d: Driver) -> None:
    d.deliver(d.take(2))
    assert all(p.phase is Phase.WAITING for p in d.replayed().pending.values())


steps = st.lists(
    st.tuples(
        st.sampled_from(["take", "deliver", "ack", "retry", "dead", "expire", "gone", "pause"]),
        st.integers(0, 1000),
    ),
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps)
def test_any_sequence_of_transitions_replays_to_the_same_state(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    """Whatever happened, in whatever order, a restart after any step finds the same."""
    d = Driver(tmp_path_factory.mktemp("life") / "g.journal")
    for op, n in ops:
        waiting = sorted(d.state.pending)
        held = sorted(d.holdings.offsets[r] for r in d.holdings.rows())
        if op == "take":
            d.take(1 + n % 4)
        elif op == "deliver" and waiting:
            d.deliver([d.state.pending[o] for o in waiting[: 1 + n % 3]])
        elif op == "ack" and held:
            d.ack(held[n % len(held)])
        elif op == "retry" and held:
            why = ("nacked", "ack_timeout")[n % 2]
            d.retry(held[n % len(held)], at=float(n), why=why, error="e" * (n % 2), failed=n > 9)
        elif op == "dead" and waiting:
            d.state.dead_letter(waiting[n % len(waiting)], "nacked" if n % 3 else None)
        elif op in ("expire", "gone") and waiting:
            done = {"expire": d.state.expire, "gone": d.state.gone}
            done[op](waiting[n % len(waiting)])
        elif op == "pause":
            d.state.set_paused(bool(n % 2))
        assert_replays(d, compact=n % 5 == 0)
