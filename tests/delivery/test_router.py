"""The router on its own, without sockets or a broker: fanout, groups and their commands.

A test plays the engine's part (``Bench``): records go into a real store (each test
runs on a ``MemoryStore`` with a ``MemoryStateStore``, and on a ``FileStore`` with a
``FileStateStore`` in tmp_path); a tick commits them,
hands them to ``Router.on_written``, runs the pumps acks asked for and writes the
group journals, as ``Engine._commit`` does. A client is a ``ClientState`` over a
``Sink`` that keeps what would have been sent; tests read those bytes back as the
lines a consumer gets, and ask ``group_info`` the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from linemq.broker.config import Config
from linemq.broker.delivery.clients import ClientState
from linemq.broker.delivery.context import DeliveryContext
from linemq.broker.delivery.router import DeliveryError, Router
from linemq.broker.protocol import Position
from linemq.broker.server.deliveries import ENCODER
from linemq.broker.storage.file_state import FileStateStore
from linemq.broker.storage.log_store import Store
from linemq.broker.storage.memory_state import MemoryStateStore
from linemq.broker.storage.memory_store import MemoryStore
from linemq.broker.storage.records import Meta, Record
from linemq.broker.storage.state_store import StateStore
from linemq.broker.storage.store import FileStore

FAST: dict[str, Any] = {"ack_timeout": 0.2, "retry_backoff_base": 0.05, "retry_backoff_max": 0.2}


class Msg(NamedTuple):
    kind: str
    topic: str
    id: str
    offset: int
    body: str


class Sink:
    """The connection side of a client (``Sender``): keeps what would be sent."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.killed: str | None = None

    def send(self, data: bytes) -> None:
        self.data += data

    def kill(self, reason: str, *, notice: bool = False) -> None:
        self.killed = reason

    async def writable(self) -> None:
        return None


class Conn:
    """A consumer: its delivery state and the lines it was sent."""

    def __init__(self, router: Router) -> None:
        self.sink = Sink()
        self.client: ClientState = router.client(self.sink)

    def got(self) -> list[Msg]:
        """Lines sent since the last call, decoded as a v1 client reads them."""
        text, self.sink.data = self.sink.data.decode(), bytearray()
        out = []
        for line in text.splitlines():
            kind, topic, id, offset, _ts, body = line.split(" ", 5)
            out.append(Msg(kind, topic, id, int(offset), body))
        return out

    def bodies(self) -> list[str]:
        return [m.body for m in self.got()]


class Bench:
    """A router over a store and a groups folder, with the engine's tick."""

    def __init__(
        self, data_dir: Path, store: Store, state: StateStore, ids: int = 0, **options: Any
    ) -> None:
        self.store = store
        self.state = state
        self.loop = asyncio.get_running_loop()
        config = Config(port=0, data_dir=data_dir, **{**FAST, **options})
        self.ctx = DeliveryContext.build(
            self.loop, config, self.publish_internal, self.schedule, ENCODER, state
        )
        self.router = Router(store, self.ctx)  # as Engine.open makes it
        self.router.open()
        self.last_id = ids
        self._scheduled = False
        self.closed = False

    def conn(self) -> Conn:
        return Conn(self.router)

    def _id(self) -> str:
        self.last_id += 1
        return f"msg_{self.last_id:08d}"

    def publish(self, topic: str, *msgs: str) -> None:
        """Append and commit at once: subscribers and groups get them now."""
        self.store.append(topic, list(msgs), time.time(), [self._id() for _ in msgs])
        self.tick()

    def publish_internal(self, topic: str, msg: str, meta: Meta | None = None) -> Record:
        """Dead letters: appended now, dispatched by the next tick (as the engine does)."""
        appended = self.store.append(topic, [msg], time.time(), [self._id()], meta)
        self.schedule()
        return appended.records[0]

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.tick)

    def tick(self) -> None:
        """``Engine._commit``'s delivery part: pumps, commit and dispatch, journals."""
        self._scheduled = False
        ctx = self.ctx
        ctx.run_pumps()
        while written := self.store.commit().written:
            for topic, records in written.items():
                self.router.on_written(topic, records)
        while ctx.dirty_journals:
            dirty, ctx.dirty_journals = ctx.dirty_journals, {}
            for journal in dirty:
                journal.write()

    async def settle(self) -> None:
        """Let the router's own tasks (catch-up, recovery, reads from disk) finish and
        the ticks they schedule run."""
        for _ in range(3):
            await asyncio.sleep(0)
            others = asyncio.all_tasks() - {asyncio.current_task()}
            if others:
                await asyncio.wait(others, timeout=5)
        await asyncio.sleep(0)

    def close(self) -> None:
        """As a stopping broker: write what is buffered, stop the groups, close journals."""
        if self.closed:
            return
        self.closed = True
        self.tick()
        self.router.close()
        self.state.close()

    def ack(self, conn: Conn, *ids: str) -> list[str]:
        """Acks read together; the ERR reasons of the refused ones."""
        results = self.router.ack_run(conn.client, list(ids))
        return [r.reason for r in results if isinstance(r, DeliveryError)]

    def info(self, topic: str, group: str) -> dict[str, int | str]:
        return dict(self.router.group_info(topic))[group]


class Benches:
    """Makes the test's bench; a second call stops the first and opens the same data
    again, as a restarted broker would (memory stores are kept: they are the data)."""

    def __init__(self, data_dir: Path, kind: str) -> None:
        self.data_dir = data_dir
        self.kind = kind
        self.last: Bench | None = None

    def __call__(self, **options: Any) -> Bench:
        last = self.last
        ids = 0
        store: Store
        state: StateStore
        if last is not None:
            last.close()
            ids = last.last_id
        if self.kind == "memory":
            store = MemoryStore() if last is None else last.store
            state = MemoryStateStore() if last is None else last.state
        else:
            if last is not None:
                last.store.close()
            store = FileStore(self.data_dir)
            store.open()
            state = FileStateStore(self.data_dir)
        self.last = Bench(self.data_dir, store, state, ids, **options)
        return self.last


@pytest.fixture(params=["memory", "file"])
async def benches(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Benches]:
    made = Benches(tmp_path / "data", request.param)
    yield made
    if made.last is not None:
        made.last.close()
        made.last.store.close()


@pytest.fixture
async def b(benches: Benches) -> Bench:
    return benches()


def offsets(msgs: list[Msg]) -> list[int]:
    return [m.offset for m in msgs]


async def read_all(b: Bench, topic: str) -> list[Msg]:
    """What the log of ``topic`` holds (no one subscribed to it)."""
    records = await b.store.read(topic, 1, 100)
    return [Msg("MSG", topic, r.id, r.offset, r.msg) for r in records]


# -- fanout ---------------------------------------------------------------------------


async def test_fanout_gives_every_subscriber_each_record_in_offset_order(b: Bench) -> None:
    one, two, other = b.conn(), b.conn(), b.conn()
    b.router.subscribe(one.client, "news")
    b.router.subscribe(two.client, "news")
    b.router.subscribe(other.client, "sport")
    b.publish("news", "a", "b")
    b.publish("news", "c")
    for conn in (one, two):
        got = conn.got()
        assert [(m.kind, m.topic, m.body) for m in got] == [
            ("MSG", "news", "a"),
            ("MSG", "news", "b"),
            ("MSG", "news", "c"),
        ]
        assert offsets(got) == [1, 2, 3]
    assert other.got() == []


async def test_fanout_from_an_offset_replays_then_goes_live_without_a_gap(b: Bench) -> None:
    b.publish("news", "a", "b", "c")
    late = b.conn()
    b.router.subscribe(late.client, "news", start=2)
    await b.settle()
    b.publish("news", "d")
    assert offsets(late.got()) == [2, 3, 4]


async def test_unsubscribe_stops_fanout(b: Bench) -> None:
    conn = b.conn()
    b.router.subscribe(conn.client, "news")
    b.publish("news", "a")
    assert b.router.unsubscribe(conn.client, "news")
    assert not b.router.unsubscribe(conn.client, "news")
    b.publish("news", "b")
    assert conn.bodies() == ["a"]


async def test_a_wildcard_subscription_gets_every_matching_topic(b: Bench) -> None:
    conn = b.conn()
    b.router.subscribe(conn.client, "orders.*")
    b.publish("orders.eu", "x")
    b.publish("orders.us", "y")
    b.publish("orders.eu.late", "too deep")
    b.publish("stock", "z")
    assert [(m.topic, m.body) for m in conn.got()] == [("orders.eu", "x"), ("orders.us", "y")]


# -- groups: delivery ---------------------------------------------------------------------


async def test_a_group_delivers_round_robin_over_its_members(b: Bench) -> None:
    one, two = b.conn(), b.conn()
    await b.router.join(one.client, "jobs", "workers")
    await b.router.join(two.client, "jobs", "workers")
    b.publish("jobs", "a", "b", "c", "d")
    assert one.bodies() == ["a", "c"]
    assert two.bodies() == ["b", "d"]
    info = b.info("jobs", "workers")
    assert (info["members"], info["inflight"], info["waiting"]) == (2, 4, 0)


async def test_a_new_group_starts_at_the_end_unless_told_otherwise(b: Bench) -> None:
    b.publish("jobs", "old")
    latest, earliest = b.conn(), b.conn()
    await b.router.join(latest.client, "jobs", "new")
    await b.router.join(earliest.client, "jobs", "all", Position("earliest", 0))
    b.publish("jobs", "fresh")
    assert latest.bodies() == ["fresh"]
    assert earliest.bodies() == ["old", "fresh"]


async def test_max_inflight_bounds_each_member_and_acks_make_room(benches: Benches) -> None:
    b = benches(max_inflight=2)
    conn = b.conn()
    await b.router.join(conn.client, "jobs", "workers")
    b.publish("jobs", "a", "b", "c", "d", "e")
    first = conn.got()
    assert [m.body for m in first] == ["a", "b"]
    assert b.info("jobs", "workers")["lag"] == 5
    assert b.ack(conn, first[0].id) == []
    b.tick()  # an ack asks for a pump in the coming tick
    third = conn.got()
    assert [m.body for m in third] == ["c"]
    assert b.ack(conn, first[1].id, third[0].id) == []
    b.tick()
    assert conn.bodies() == ["d", "e"]
    info = b.info("jobs", "workers")
    assert (info["acked"], info["inflight"], info["lag"], info["max_inflight"]) == (3, 2, 2, "2")


async def test_an_ack_of_an_id_not_held_is_refused_with_the_reason(b: Bench) -> None:
    stranger, conn = b.conn(), b.conn()
    assert b.ack(stranger, "msg_00000001") == ["no pending messages for this consumer"]
    await b.router.join(conn.client, "jobs", "workers")
    b.publish("jobs", "a")
    (msg,) = conn.got()
    assert b.ack(conn, "msg_99999999", msg.id, msg.id) == [
        "message msg_99999999 not found in pending messages",
        f"message {msg.id} not found in pending messages (already acknowledged)",
    ]
    assert b.info("jobs", "workers")["acked"] == 1
    with pytest.raises(DeliveryError, match="already acknowledged"):
        b.router.nack(conn.client, msg.id, 0.0)


async def test_nack_redelivers_and_term_dead_letters(b: Bench) -> None:
    conn, watcher = b.conn(), b.conn()
    b.router.subscribe(watcher.client, "jobs.dlq")
    await b.router.join(conn.client, "jobs", "workers")
    b.publish("jobs", "a", "b")
    a, bb = conn.got()
    b.router.nack(conn.client, a.id, 0.0, "busy")
    assert conn.got() == [a]  # the same message again, at once
    b.router.term(conn.client, bb.id, "poison")
    await b.settle()
    (letter,) = watcher.got()
    assert letter.topic == "jobs.dlq"
    assert bb.id in letter.body and "poison" in letter.body
    info = b.info("jobs", "workers")
    assert (info["dead"], info["inflight"], info["acked"]) == (1, 1, 0)
    with pytest.raises(DeliveryError, match=r"not found in pending messages \(terminated\)"):
        b.router.term(conn.client, bb.id, None)


async def test_a_message_out_of_retries_is_dead_lettered(benches: Benches) -> None:
    b = benches(max_retries=1)
    conn = b.conn()
    await b.router.join(conn.client, "jobs", "workers")
    b.publish("jobs", "a")
    (first,) = conn.got()
    b.router.nack(conn.client, first.id, 0.0)
    (second,) = conn.got()
    b.router.nack(conn.client, second.id, 0.0)
    await b.settle()
    assert conn.got() == []
    assert b.info("jobs", "workers")["dead"] == 1
    assert offsets(await read_all(b, "jobs.dlq")) == [1]


async def test_an_unacked_message_is_redelivered_after_the_ack_timeout(b: Bench) -> None:
    conn = b.conn()
    await b.router.join(conn.client, "jobs", "workers")
    b.publish("jobs", "a")
    (first,) = conn.got()
    again: list[Msg] = []
    for _ in range(100):  # the ack timeout is 0.2 s
        await asyncio.sleep(0.02)
        if again := conn.got():
            break
    assert [(m.id, m.offset) for m in again] == [(first.id, first.offset)]


# -- groups: membership -----------------------------------------------------------------


async def test_a_member_that_leaves_gives_its_messages_to_the_others(b: Bench) -> None:
    one, two = b.conn(), b.conn()
    await b.router.join(one.client, "jobs", "workers")
    await b.router.join(two.client, "jobs", "workers")
    b.publish("jobs", "a", "b")
    assert one.bodies() == ["a"]
    assert two.bodies() == ["b"]
    assert b.router.leave(one.client, "jobs", "workers")
    assert not b.router.leave(one.client, "jobs", "workers")
    assert two.bodies() == ["a"]
    assert b.info("jobs", "workers")["members"] == 1


async def test_a_disconnected_member_gives_its_messages_back(b: Bench) -> None:
    one, two = b.conn(), b.conn()
    await b.router.join(one.client, "jobs", "workers")
    b.router.subscribe(one.client, "jobs")
    b.publish("jobs", "a")
    assert one.bodies() == ["a", "a"]  # the fanout copy and the group's
    b.router.disconnect(one.client)
    await b.router.join(two.client, "jobs", "workers")
    b.publish("jobs", "b")
    assert two.bodies() == ["a", "b"]
    assert one.got() == []
    assert b.info("jobs", "workers")["members"] == 1


async def test_a_member_not_heard_from_is_dropped_and_its_messages_go_back(
    benches: Benches,
) -> None:
    b = benches(heartbeat_timeout=0.1)
    quiet, chatty = b.conn(), b.conn()
    await b.router.join(quiet.client, "jobs", "workers")
    b.publish("jobs", "a")
    assert quiet.bodies() == ["a"]
    await b.router.join(chatty.client, "jobs", "workers")
    for _ in range(50):
        await asyncio.sleep(0.02)
        b.router.heard_from(chatty.client)
        if quiet.sink.killed:
            break
    assert quiet.sink.killed == "heartbeat timeout"
    assert chatty.sink.killed is None
    assert chatty.bodies() == ["a"]
    assert b.info("jobs", "workers")["members"] == 1


async def test_a_wildcard_group_joins_topics_that_appear_later(b: Bench) -> None:
    b.publish("orders.eu", "before")
    conn = b.conn()
    await b.router.join(conn.client, "orders.*", "billing")
    b.publish("orders.eu", "x")
    b.publish("orders.us", "y")
    b.publish("stock", "z")
    assert [(m.topic, m.body) for m in conn.got()] == [("orders.eu", "x"), ("orders.us", "y")]
    assert [name for name, _ in b.router.group_info("orders.us")] == ["billing"]
    assert b.router.group_info("stock") == []


# -- groups: operations -----------------------------------------------------------------


async def test_a_paused_group_delivers_nothing_until_resumed(b: Bench) -> None:
    conn = b.conn()
    await b.router.join(conn.client, "jobs", "workers")
    b.router.pause("jobs", "workers", True)
    b.publish("jobs", "a", "b")
    assert conn.got() == []
    info = b.info("jobs", "workers")
    assert (info["paused"], info["lag"]) == (1, 2)
    b.router.pause("jobs", "workers", False)
    assert conn.bodies() == ["a", "b"]
    assert b.info("jobs", "workers")["paused"] == 0
    with pytest.raises(DeliveryError, match="no group nobody on jobs"):
        b.router.pause("jobs", "nobody", True)


async def test_seek_starts_the_group_over_and_forgets_what_was_out(b: Bench) -> None:
    conn = b.conn()
    await b.router.join(conn.client, "jobs", "workers")
    b.publish("jobs", "a", "b", "c")
    a, bb, _c = conn.got()
    assert b.ack(conn, a.id) == []
    b.router.seek("jobs", "workers", 3)
    assert conn.bodies() == ["c"]
    assert b.ack(conn, bb.id) == [
        f"message {bb.id} not found in pending messages (group was reset with SEEK)"
    ]
    b.router.seek("jobs", "workers", 1)
    assert conn.bodies() == ["a", "b", "c"]
    info = b.info("jobs", "workers")
    assert (info["inflight"], info["next_offset"], info["acked"]) == (3, 4, 1)
    with pytest.raises(DeliveryError, match="no group nobody on jobs"):
        b.router.seek("jobs", "nobody", 1)


async def test_delete_refuses_a_group_with_members_unless_forced(b: Bench) -> None:
    conn = b.conn()
    await b.router.join(conn.client, "jobs", "workers")
    b.publish("jobs", "a")
    (a,) = conn.got()
    with pytest.raises(DeliveryError, match="group has members"):
        b.router.delete("jobs", "workers", force=False)
    b.router.delete("jobs", "workers", force=True)
    assert b.router.group_info("jobs") == []
    assert b.ack(conn, a.id) == ["no pending messages for this consumer"]
    b.publish("jobs", "b")
    assert conn.got() == []
    with pytest.raises(DeliveryError, match="no group workers on jobs"):
        b.router.delete("jobs", "workers", force=True)


async def test_a_deleted_group_is_gone_after_a_reopen(benches: Benches) -> None:
    b = benches()
    conn = b.conn()
    await b.router.join(conn.client, "jobs", "workers")
    b.router.leave(conn.client, "jobs", "workers")
    b.router.delete("jobs", "workers", force=False)
    again = benches()
    assert again.router.group_info("jobs") == []


# -- reopening ----------------------------------------------------------------------------


async def test_a_reopened_group_keeps_its_cursor_and_gets_back_what_was_out(
    benches: Benches,
) -> None:
    b = benches()
    conn = b.conn()
    await b.router.join(conn.client, "jobs", "workers")
    b.publish("jobs", "a", "b", "c")
    a, bb, _c = conn.got()
    assert b.ack(conn, a.id, bb.id) == []
    b.router.pause("jobs", "workers", True)

    again = benches()  # the same log, a new router over the same groups folder
    info = again.info("jobs", "workers")
    assert (info["members"], info["acked"], info["paused"], info["waiting"]) == (0, 2, 1, 1)
    back = again.conn()
    await again.router.join(back.client, "jobs", "workers")
    again.router.pause("jobs", "workers", False)
    await again.settle()  # the in-flight message's record is read back first
    again.publish("jobs", "d")
    assert back.bodies() == ["c", "d"]
