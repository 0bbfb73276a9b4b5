"""Pure parts of per-group policies, without a broker or a sleep: how orderings and a group's
settings are journaled and replayed, how settings lay over a topic's policy, the token
bucket's arithmetic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from linemq.broker.config import RateSetting
from linemq.broker.delivery.backoff import ExponentialBackoff, FixedBackoff, RetryPolicy
from linemq.broker.delivery.lifecycle import GroupState, Pending
from linemq.broker.delivery.policy import DeliveryPolicy, settings, with_overrides
from linemq.broker.delivery.rate import TokenBucket
from linemq.broker.delivery.scheduler import ReadyQueue
from linemq.broker.storage.checksum import seal
from linemq.broker.storage.journal import Journal
from linemq.broker.storage.records import Meta

TOPIC = DeliveryPolicy(RetryPolicy(3, ExponentialBackoff(1.0, 60.0)), 30.0, 5, "orders.*")


def reopened(path: Path) -> GroupState:
    state = GroupState(Journal(path))
    assert state.load()
    return state


def write_lines(path: Path, *entries: bytes) -> None:
    path.write_bytes(b"".join(seal(e) for e in entries))


def test_a_journal_of_before_key_had_a_name_reads_as_key(tmp_path: Path) -> None:
    path = tmp_path / "g.journal"
    write_lines(path, b'{"e":"start","o":1}', b'{"e":"order","v":"none"}')
    assert reopened(path).ordering == "key"
    write_lines(path, b'{"e":"start","o":1}')
    assert reopened(path).ordering == "key"


@pytest.mark.parametrize("ordering", ["none", "key", "fifo"])
def test_every_ordering_and_the_groups_settings_survive_replay_and_snapshots(
    tmp_path: Path, ordering: str
) -> None:
    path = tmp_path / "g.journal"
    state = GroupState(Journal(path))
    state.load()
    state.create(1)
    state.set_ordering(ordering)
    state.set_policy({"rate": "10/1s", "max_retries": "7"})
    state.journal.write()
    again = reopened(path)
    assert (again.ordering, again.overrides) == (ordering, {"rate": "10/1s", "max_retries": "7"})
    again.journal.rewrite_now(again.snapshot_entries())
    snap = reopened(path)
    assert (snap.ordering, snap.overrides) == (ordering, {"rate": "10/1s", "max_retries": "7"})


def test_a_damaged_settings_line_is_lost_like_any_damaged_line(tmp_path: Path) -> None:
    path = tmp_path / "g.journal"
    write_lines(path, b'{"e":"start","o":1}', b'{"e":"pol","v":{"rate":"fast"}}')
    state = GroupState(Journal(path))
    state.load()
    assert state.overrides == {}


def test_a_groups_settings_lay_over_its_topics_policy() -> None:
    got = with_overrides(TOPIC, {"backoff": "fixed:5s", "rate": "3/500ms", "nack_backoff": "off"})
    assert got.retry == RetryPolicy(3, FixedBackoff(5.0))
    assert (got.rate, got.nack_backoff, got.ack_timeout) == (RateSetting(3, 0.5), False, 30.0)
    rated = DeliveryPolicy(TOPIC.retry, 30.0, 5, rate=RateSetting(100, 1.0))
    assert with_overrides(rated, {"rate": "none"}).rate is None
    assert settings(got, "fifo") == {
        "max_retries": "3",
        "backoff": "fixed:5s",
        "ack_timeout": "30s",
        "max_inflight": "5",
        "ordering": "fifo",
        "rate": "3/500ms",
        "nack_backoff": "off",
    }


def test_ordering_none_holds_no_key_and_key_does() -> None:
    def keyed(offset: int) -> Pending:
        p = Pending(offset)
        p.meta = Meta(key="a")
        return p

    queue = ReadyQueue()
    for o in (1, 2):
        queue.push(keyed(o))
    assert queue.ready == 1 and queue.parked == 1
    queue.reorder("none")
    for o in (1, 2):
        queue.push(keyed(o))
    assert queue.ready == 2 and queue.parked == 0


class FakeLoop:
    """The clock and timers a bucket uses, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any) -> Handle:
        self.timers.append((self.now + delay, callback))
        return Handle()


class Handle:
    def cancel(self) -> None:
        pass


def test_a_bucket_bursts_then_refills_at_its_rate_with_one_timer_per_wait() -> None:
    loop = FakeLoop()
    woken: list[float] = []
    bucket = TokenBucket(loop, RateSetting(4, 2.0), lambda: woken.append(loop.now))  # type: ignore[arg-type]
    assert bucket.available() == 4
    bucket.take(4)
    assert bucket.available() == 0
    bucket.wait()
    bucket.wait()  # already waiting: no second timer, one wait counted
    assert bucket.waits == 1 and len(loop.timers) == 1
    due, fire = loop.timers[0]
    assert due == pytest.approx(100.5)  # 4 per 2 s: a token every half second
    loop.now = due
    fire()
    assert woken == [due] and bucket.available() == 1
    loop.now += 60
    assert bucket.available() == 4, "never more than a burst's worth"
