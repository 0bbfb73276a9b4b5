"""One small method per command, found by the command's type (aiosmtpd's ``smtp_VERB`` style).

Handlers open with guard clauses, call into storage or delivery, and queue a
reply. Anything slow (disk reads) runs in a task that fills a reply slot, so
the connection's replies still leave in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import structlog

from linemq.broker.auth import Permission, auth_delay
from linemq.broker.delivery.dead_letters import DeadLetterNotFound
from linemq.broker.delivery.router import DeliveryError
from linemq.broker.observe.stats import collect, filter_snapshot
from linemq.broker.protocol import (
    Ack,
    Auth,
    Command,
    Delete,
    DlqList,
    Groups,
    Heartbeat,
    History,
    Nack,
    Pause,
    Ping,
    Pub,
    Purge,
    Quit,
    Replay,
    Resume,
    Seek,
    Stats,
    Sub,
    Term,
    Unsub,
    is_pattern,
    replies,
)
from linemq.broker.protocol.names import is_dead_letter_topic
from linemq.broker.protocol.v2 import Hello, Put, hello
from linemq.broker.server.connection import Connection
from linemq.broker.server.core import Core
from linemq.broker.server.deliveries import deliveries
from linemq.broker.server.schedule_verbs import ScheduleVerbs
from linemq.broker.server.topic_verbs import TopicVerbs, remove_letter
from linemq.broker.storage.log_store import TopicView, offsets_at_commit
from linemq.broker.storage.records import Record, StorageError

if TYPE_CHECKING:
    from linemq.broker.storage.state_store import EventLog

log = structlog.get_logger(__name__)

MAX_HISTORY: Final = 100_000
STREAM_RECORDS: Final = 1000
STREAM_BYTES: Final = 256 * 1024
"""A streamed reply (HISTORY, DLQ) reads and writes at most this much at a time."""
MAX_AUTH_FAILURES: Final = 10
OPEN_BEFORE_AUTH: Final = (Ping, Quit, Auth, Hello)
DEAD_LETTERS_WRITTEN_BY_BROKER: Final = "dead-letter topics are written by the broker"


class Handlers:
    def __init__(self, broker: Core) -> None:
        self.broker = broker
        self.router = broker.router
        self._table: dict[type[Any], Callable[[Connection, Any], None]] = {
            Ping: self.cmd_PING,
            Auth: self.cmd_AUTH,
            Quit: self.cmd_QUIT,
            Heartbeat: self.cmd_HEARTBEAT,
            Pub: self.cmd_PUB,
            Sub: self.cmd_SUB,
            Unsub: self.cmd_UNSUB,
            History: self.cmd_HISTORY,
            Ack: self.cmd_ACK,
            Nack: self.cmd_NACK,
            Term: self.cmd_TERM,
            Groups: self.cmd_GROUPS,
            DlqList: self.cmd_DLQ,
            Replay: self.cmd_REPLAY,
            Stats: self.cmd_STATS,
            Pause: self.cmd_PAUSE,
            Resume: self.cmd_RESUME,
            Purge: self.cmd_PURGE,
            Delete: self.cmd_DELETE,
            Hello: self.cmd_HELLO,
            Seek: self.cmd_SEEK,
            Put: self.cmd_PUT,
        }
        self._table.update(TopicVerbs(self).table())  # STATUS, DELETE <topic>, TOUCH
        self._table.update(ScheduleVerbs(self).table())  # SCHEDULE, SCHEDULES, UNSCHEDULE
        self._tasks: set[asyncio.Task[None]] = set()

    async def finish(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for commands already running: a stopping
        broker still answers them."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def dispatch(self, conn: Connection, command: Command) -> None:
        needs_auth = conn.user is None and self.broker.users is not None
        if needs_auth and not isinstance(command, OPEN_BEFORE_AUTH):
            conn.reply(replies.err("auth required"))
            return
        if type(command) is not Pub:  # it may see offsets: PUBs sent before it count
            self.broker.append_gathered()
        self._table[type(command)](conn, command)

    # -- authentication --------------------------------------------------------------

    def cmd_AUTH(self, conn: Connection, cmd: Auth) -> None:
        users = self.broker.users
        if users is None:
            conn.reply(replies.AUTHENTICATED)  # auth is off: every client is trusted
            return
        user = users.authenticate(cmd.token)
        if user is not None:
            conn.authenticated(user)
            conn.client.reads = user.may_subscribe
            log.info("authenticated", peer=conn.peer, user=user.name)
            conn.reply(replies.AUTHENTICATED)
            return
        # Slow down guessing: each failure on a connection doubles the wait, and
        # after MAX_AUTH_FAILURES the connection is closed.
        conn.auth_failures += 1
        log.warning("auth_failed", peer=conn.peer, failures=conn.auth_failures)
        delay = auth_delay(conn.auth_failures)
        slot = conn.reply_later()
        if conn.auth_failures >= MAX_AUTH_FAILURES:
            conn.quit("too many failed AUTH")
        asyncio.get_running_loop().call_later(delay, slot.fill, replies.err("auth failed"))

    def _may(self, conn: Connection, topic: str, permission: Permission) -> bool:
        """Whether the user may: README's Security table says which verb needs what."""
        user = conn.user
        if user is None or user.may(permission, topic):
            return True
        log.warning(
            "permission_denied", peer=conn.peer, user=user.name, topic=topic, needs=permission
        )
        conn.reply(replies.err("permission denied"))
        return False

    def _may_write(self, conn: Connection, topic: str) -> bool:
        """Publish permission, and never into a dead-letter topic: a forged letter would be
        republished by REPLAY into a topic its writer may not publish to."""
        if is_dead_letter_topic(topic):
            log.warning("dead_letter_publish_refused", peer=conn.peer, topic=topic)
            conn.reply(replies.err(DEAD_LETTERS_WRITTEN_BY_BROKER))
            return False
        return self._may(conn, topic, "publish")

    # -- session -------------------------------------------------------------------

    def cmd_PING(self, conn: Connection, cmd: Ping) -> None:
        conn.reply(replies.PONG)

    def cmd_QUIT(self, conn: Connection, cmd: Quit) -> None:
        conn.reply(replies.BYE)
        conn.quit()

    def cmd_HEARTBEAT(self, conn: Connection, cmd: Heartbeat) -> None:
        conn.reply(replies.HEARTBEAT_RECEIVED)

    # -- publishing and reading ----------------------------------------------------

    def cmd_PUB(self, conn: Connection, cmd: Pub) -> None:
        if not self._may_write(conn, cmd.topic):
            return
        limit = self.broker.config.max_message_bytes
        if len(cmd.msg) * 4 > limit and len(cmd.msg.encode()) > limit:
            self._refuse(conn, f"message too large (limit {limit} bytes)")
            return
        if not self._may_create(conn, cmd.topic):
            return
        self.broker.publish(conn, cmd.topic, cmd.msg)

    def cmd_PUT(self, conn: Connection, cmd: Put) -> None:
        limit = self.broker.config.max_message_bytes
        if len(cmd.payload) > limit:
            self._refuse(conn, f"message too large (limit {limit} bytes)")
            return
        if not self._may_write(conn, cmd.topic) or not self._may_create(conn, cmd.topic):
            return
        self.broker.publish_put(conn, cmd)

    def cmd_HELLO(self, conn: Connection, cmd: Hello) -> None:
        conn.client.version = cmd.version
        if not cmd.notices:
            conn.reply(hello(cmd.version))
            return
        conn.notices = True
        config = self.broker.config
        settings = {
            "heartbeat_timeout": config.heartbeat_timeout,
            "ack_timeout": config.ack_timeout,
            "max_inflight": config.max_inflight,
        }
        conn.reply(hello(cmd.version, settings))

    def cmd_HISTORY(self, conn: Connection, cmd: History) -> None:
        if not self._may(conn, cmd.topic, "subscribe"):
            return
        log_ = self.broker.store.get(cmd.topic)
        if log_ is None or cmd.n == 0:
            conn.reply(replies.HISTORY_END)
            return
        version, topic = conn.client.version, cmd.topic

        def render(records: list[Record]) -> bytes:
            return deliveries(version, topic, records, 0, "HISTORY")

        self._stream(conn, topic, log_, min(cmd.n, MAX_HISTORY), render, replies.HISTORY_END)

    # -- subscriptions -------------------------------------------------------------

    def cmd_SUB(self, conn: Connection, cmd: Sub) -> None:
        if not self._may(conn, cmd.topic, "subscribe"):
            return
        client = conn.client
        if cmd.group is None:
            already = cmd.topic in client.topics
        else:
            key = (cmd.topic, cmd.group)
            already = key in client.members or key in client.patterns
        if not already:
            count = len(client.topics) + len(client.members) + len(client.patterns)
            if count >= self.broker.config.max_subscriptions:
                self._refuse(conn, "too many subscriptions")
                return
            creates = cmd.group is not None and not is_pattern(cmd.topic)
            if creates and not self._may_create(conn, cmd.topic):
                return
        ok = replies.subscribed(cmd.topic, cmd.group)
        if cmd.group is None and cmd.start is None:
            conn.reply(ok)
            self.router.subscribe(client, cmd.topic)
            return

        async def subscribe() -> bytes:
            # Deliveries this causes queue behind the OK, which fills the slot below.
            if cmd.group is None:
                start = await self.router.resolve(cmd.topic, cmd.start)
                self.router.subscribe(client, cmd.topic, start)
            else:
                try:
                    await self.router.join(
                        client, cmd.topic, cmd.group, cmd.start, cmd.ordering, cmd.filter
                    )
                except DeliveryError as e:
                    return replies.err(e.reason)
                log.debug("group_joined", peer=conn.peer, topic=cmd.topic, group=cmd.group)
            return ok

        self._later(conn, subscribe, block=True)

    def cmd_SEEK(self, conn: Connection, cmd: Seek) -> None:
        if not self._may(conn, cmd.topic, "manage"):
            return

        async def seek() -> bytes:
            offset = await self.router.resolve(cmd.topic, cmd.position)
            if offset is None:  # latest
                log_ = self.broker.store.get(cmd.topic)
                offset = log_.last_offset + 1 if log_ is not None else 1
            try:
                self.router.seek(cmd.topic, cmd.group, offset)
            except DeliveryError as e:
                return replies.err(e.reason)
            return replies.sought(cmd.topic, cmd.group, offset)

        self._later(conn, seek, durable=True, block=True)

    def cmd_UNSUB(self, conn: Connection, cmd: Unsub) -> None:
        if cmd.group is None:
            left = self.router.unsubscribe(conn.client, cmd.topic)
            missing = f"not subscribed to {cmd.topic}"
        else:
            left = self.router.leave(conn.client, cmd.topic, cmd.group)
            log.debug("group_left", peer=conn.peer, topic=cmd.topic, group=cmd.group, left=left)
            missing = f"not a member of group {cmd.group} on {cmd.topic}"
        conn.reply(replies.unsubscribed(cmd.topic, cmd.group) if left else replies.err(missing))

    # -- consumer groups -----------------------------------------------------------

    def cmd_ACK(self, conn: Connection, cmd: Ack) -> None:
        self.ack_run(conn, [cmd.id])

    def ack_run(self, conn: Connection, ids: list[str]) -> None:
        """Acks read together. Each OK waits for its group's journal; consecutive OKs
        waiting for the same journal share one reply slot."""
        waiting: EventLog | None = None
        count = 0
        for result in self.router.ack_run(conn.client, ids):
            if isinstance(result, DeliveryError):
                self._acked(conn, waiting, count)
                waiting, count = None, 0
                conn.reply(replies.err(result.reason))
                continue
            if result is not waiting:
                self._acked(conn, waiting, count)
                waiting, count = result, 0
            count += 1
        self._acked(conn, waiting, count)

    def _acked(self, conn: Connection, journal: EventLog | None, count: int) -> None:
        if journal is not None and count:
            self.broker.reply_after_write(conn, journal, replies.ACK_RECEIVED, count)

    def cmd_NACK(self, conn: Connection, cmd: Nack) -> None:
        try:
            journal = self.router.nack(conn.client, cmd.id, cmd.delay, cmd.reason)
        except DeliveryError as e:
            conn.reply(replies.err(e.reason))
            return
        self.broker.reply_after_write(conn, journal, replies.NACK_RECEIVED)

    def cmd_TERM(self, conn: Connection, cmd: Term) -> None:
        try:
            journal = self.router.term(conn.client, cmd.id, cmd.reason)
        except DeliveryError as e:
            conn.reply(replies.err(e.reason))
            return
        self.broker.reply_after_write(conn, journal, replies.TERMINATED)

    def cmd_GROUPS(self, conn: Connection, cmd: Groups) -> None:
        if not self._may(conn, cmd.topic, "subscribe"):
            return
        lines = [
            replies.group_line(cmd.topic, name, info)
            for name, info in self.router.group_info(cmd.topic)
        ]
        lines.append(replies.GROUPS_END)
        conn.reply(b"".join(lines))

    # -- dead letters --------------------------------------------------------------

    def cmd_DLQ(self, conn: Connection, cmd: DlqList) -> None:
        if not self._may(conn, cmd.topic, "subscribe"):  # a topic's dead letters: as the topic
            return
        dlq = self.broker.store.get(cmd.topic + ".dlq")
        if dlq is None or cmd.n == 0:
            conn.reply(replies.DLQ_END)
            return
        topic, describe = cmd.topic, self.broker.dead_letters.describe

        def render(records: list[Record]) -> bytes:
            return b"".join(
                [replies.dlq_line(topic, o, text) for o, text in describe(topic, records)]
            )

        self._stream(
            conn,
            cmd.topic + ".dlq",
            dlq,
            min(cmd.n, MAX_HISTORY),
            render,
            replies.DLQ_END,
            prepare=lambda: self.broker.dead_letters.load(topic),
        )

    def cmd_REPLAY(self, conn: Connection, cmd: Replay) -> None:
        if not self._may(conn, cmd.topic, "manage"):
            return

        async def replay() -> bytes:
            try:
                done = await self.broker.dead_letters.replay(cmd.topic, cmd.id)
            except DeadLetterNotFound as e:
                return replies.err(str(e))
            log.info(
                "dead_letters_replayed",
                topic=cmd.topic,
                id=cmd.id,
                count=done.replayed,
                skipped=done.skipped,
                user=_name(conn),
            )
            return replies.replayed(done.replayed, done.skipped)

        self._later(conn, replay, durable=True)

    def cmd_PURGE(self, conn: Connection, cmd: Purge) -> None:
        if not self._may(conn, cmd.topic, "manage"):  # <t>.dlq: manage on <t>
            return
        if cmd.letter is not None:
            self._later(conn, lambda: remove_letter(self.broker, conn, cmd), durable=True)
            return

        async def purge() -> bytes:
            count = await self.broker.purge(cmd.topic)  # StorageError: see _later
            log.warning(
                "topic_purged", topic=cmd.topic, records=count, peer=conn.peer, user=_name(conn)
            )
            return replies.purged(count)

        self._later(conn, purge)

    def cmd_DELETE(self, conn: Connection, cmd: Delete) -> None:
        if not self._may(conn, cmd.topic, "manage"):
            return

        async def delete() -> bytes:
            try:
                await self.broker.delete_group(cmd.topic, cmd.group, cmd.force)
            except DeliveryError as e:
                return replies.err(e.reason)
            log.warning(
                "group_deleted", topic=cmd.topic, group=cmd.group, force=cmd.force, user=_name(conn)
            )
            return replies.deleted(cmd.topic, cmd.group)

        self._later(conn, delete, block=True)

    # -- operations ----------------------------------------------------------------

    def cmd_STATS(self, conn: Connection, cmd: Stats) -> None:
        if cmd.topic is not None and not self._may(conn, cmd.topic, "subscribe"):
            return
        snap = collect(self.broker.face, cmd.topic)
        if conn.user is not None:  # as the HTTP API and /metrics: only what the user may read
            snap = filter_snapshot(snap, conn.user.may_subscribe)
        lines = [replies.stat_line("broker", (), snap.broker)]
        lines += [replies.stat_line("topic", (t,), f) for t, f in snap.topics.items()]
        lines += [replies.stat_line("group", (t, g), f) for t, g, f in snap.groups]
        lines.append(replies.STATS_END)
        conn.reply(b"".join(lines))

    def cmd_PAUSE(self, conn: Connection, cmd: Pause) -> None:
        self._pause(conn, cmd.topic, cmd.group, True, replies.paused(cmd.topic, cmd.group))

    def cmd_RESUME(self, conn: Connection, cmd: Resume) -> None:
        self._pause(conn, cmd.topic, cmd.group, False, replies.resumed(cmd.topic, cmd.group))

    def _pause(self, conn: Connection, topic: str, group: str, paused: bool, ok: bytes) -> None:
        if not self._may(conn, topic, "manage"):
            return
        try:
            journal = self.router.pause(topic, group, paused)
        except DeliveryError as e:
            conn.reply(replies.err(e.reason))
            return
        event = "group_paused" if paused else "group_resumed"
        log.info(event, topic=topic, group=group, user=_name(conn))
        self.broker.reply_after_write(conn, journal, ok)

    # -- helpers -------------------------------------------------------------------

    def _refuse(self, conn: Connection, reason: str) -> None:
        log.warning("limit_reached", peer=conn.peer, reason=reason)
        conn.reply(replies.err(reason))

    def _may_create(self, conn: Connection, topic: str) -> bool:
        """A new topic is refused past --max-topics; existing ones always work."""
        store = self.broker.store
        if store.get(topic) is not None or len(store.topics()) < self.broker.config.max_topics:
            return True
        self._refuse(conn, "too many topics")
        return False

    def _stream(
        self,
        conn: Connection,
        topic: str,
        log_: TopicView,
        n: int,
        render: Callable[[list[Record]], bytes],
        end: bytes,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """The last ``n`` records of ``log_`` as one reply, read and written a batch at a time.

        Each batch waits until the client has read the one before (``Connection.ready``),
        so the broker holds one batch per reader, however long the reply and however
        slowly it is read; the client sees the same bytes as a reply built whole.
        """
        slot = conn.reply_later()
        appended = log_.last_offset  # a PUB sent before it is in it, one sent after is not
        at_commit = offsets_at_commit(self.broker.store)  # then known once its reply is
        read = self.broker.store.read

        async def run() -> None:
            if not await conn.ready(slot):
                return
            if prepare is not None:  # what ``render`` needs loaded first
                await prepare()
            last = log_.written_offset if at_commit else min(appended, log_.written_offset)
            offset = max(last - n + 1, log_.first_offset)
            try:
                while offset <= last:
                    if not await conn.ready(slot):
                        return  # gone, or dropped as a slow consumer
                    records = log_.read_cached(offset, STREAM_RECORDS, STREAM_BYTES)
                    if records is None:
                        records = await read(topic, offset, STREAM_RECORDS, STREAM_BYTES)
                    if records and records[-1].offset > last:
                        records = [r for r in records if r.offset <= last]
                    if not records:
                        break
                    if not conn.write_part(render(records)):
                        return
                    offset = records[-1].offset + 1
                data = end
            except Exception:
                log.exception("command_failed", peer=conn.peer)
                data = replies.err("internal error")
            slot.fill(data)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _later(
        self,
        conn: Connection,
        work: Callable[[], Awaitable[bytes]],
        *,
        durable: bool = False,
        block: bool = False,
    ) -> None:
        """Run ``work`` in a task; its reply keeps its place. ``block``: later commands wait."""
        slot = conn.reply_later()
        if block:
            conn.block_input()

        async def run() -> None:
            try:
                data = await work()
            except StorageError as e:  # a topic that could not be opened, a failed write
                data = replies.storage_unavailable(e)
            except Exception:
                log.exception("command_failed", peer=conn.peer)
                data = replies.err("internal error")
            slot.fill(data, durable=durable)
            if block:
                conn.unblock_input()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _name(conn: Connection) -> str | None:
    """Who did it, for the log of an operator action (None: auth is off)."""
    return conn.user.name if conn.user is not None else None
