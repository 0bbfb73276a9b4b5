"""The blocking SyncClient against the fake broker in a thread."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from linemq.clients.aio import BrokerError
from linemq.clients.sync import SyncClient

if TYPE_CHECKING:
    from conftest import FakeBroker


def test_publish_history_and_errors(threaded_fake_broker: FakeBroker) -> None:
    with SyncClient(port=threaded_fake_broker.port) as c:
        c.ping()
        c.publish("chat", "hello")
        assert c.publish_many("chat", (f"m{i}" for i in range(3))) == 3
        with pytest.raises(BrokerError, match="rejected boom"):
            c.publish("chat", "boom")
        assert [m.text for m in c.history("chat", 2)] == ["m1", "m2"]
        assert c.replay("jobs", all=True) == 1
        with pytest.warns(DeprecationWarning):
            assert c.replay("jobs", "ALL") == 1
        assert [g.group for g in c.groups("jobs")] == ["workers", "audit"]
        assert c.dlq("jobs")[0].reason == "nacked"
    assert threaded_fake_broker.received[-1] == "QUIT"


def test_subscribe_iterates_and_acks_group_messages(threaded_fake_broker: FakeBroker) -> None:
    with SyncClient(port=threaded_fake_broker.port) as c:
        sub = c.subscribe("jobs", "workers")
        c.publish_many("jobs", ["a", "b"])
        got = []
        for m in sub:
            m.ack()
            got.append(m)
            if len(got) == 2:
                break
        with pytest.raises(TimeoutError):
            sub.next(timeout=0.05)
        sub.unsubscribe()
        with pytest.raises(StopIteration):
            sub.next()
    assert [m.text for m in got] == ["a", "b"]
    assert [f"ACK {m.id}" for m in got] == [
        r for r in threaded_fake_broker.received if r.startswith("ACK")
    ]


def test_fanout_message_cannot_be_acked(threaded_fake_broker: FakeBroker) -> None:
    with SyncClient(port=threaded_fake_broker.port) as c:
        sub = c.subscribe("news")
        c.publish("news", "n")
        m = sub.next(timeout=2)
        with pytest.raises(ValueError, match="consumer-group"):
            m.ack()


def test_connection_loss_raises(threaded_fake_broker: FakeBroker) -> None:
    with SyncClient(port=threaded_fake_broker.port, reconnect=None) as c:
        sub = c.subscribe("chat")
        threaded_fake_broker._loop.call_soon_threadsafe(threaded_fake_broker.drop_connections)  # type: ignore[union-attr]
        with pytest.raises(ConnectionError):
            sub.next(timeout=2)
        with pytest.raises(ConnectionError):
            c.ping()


def test_connect_failure_raises_and_leaves_no_thread_behind() -> None:
    c = SyncClient(port=1, timeout=1)
    with pytest.raises(ConnectionError):
        c.connect()
    assert not any(t.name == "linemq-sync" for t in threading.enumerate())
    with pytest.raises(ConnectionError, match="not connected"):
        c.ping()
