"""The broker: wires storage, delivery and connections, and runs the commit tick.

Everything that changes state (publishes, journaled deliveries and acks) only
appends to in-memory buffers. Once per loop iteration a tick writes them: the
store commits every topic appended to (one write per touched segment file,
however many topics and connections), then new records go out to subscribers
and groups, then group journals are written, then replies whose commit is
durable per --fsync are released and every connection's output is flushed with
one write.

One shortcut: a lone PUB that finds no tick pending (nothing else has happened
in this iteration) is written and answered at once, and dispatched to
subscribers after its reply is out. A publisher that waits for each reply gets
its round trip without the tick; the next connection in the same iteration
batches as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from pathlib import Path
from typing import Final

import structlog

from linemq.broker.auth import Users, exposed_addresses, load_users
from linemq.broker.config import Config
from linemq.broker.delivery.context import DeliveryContext
from linemq.broker.delivery.dead_letters import DeadLetters
from linemq.broker.delivery.router import Router
from linemq.broker.engine import upkeep
from linemq.broker.engine.dedup import DedupIndex
from linemq.broker.engine.durability import Durability, Syncable, Writable
from linemq.broker.engine.ids import IdGenerator
from linemq.broker.engine.pub_batch import PubBatch
from linemq.broker.engine.tickets import Tickets
from linemq.broker.observe.histogram import Histogram
from linemq.broker.protocol import LineFramer, is_pattern, replies
from linemq.broker.protocol.v2 import Put, closing, put_reply
from linemq.broker.server.connection import Connection, Slot
from linemq.broker.server.face import BrokerFace, HttpServer, StartHttp
from linemq.broker.server.handlers import Handlers
from linemq.broker.server.publishing import wait_for
from linemq.broker.server.put_records import record_text, stored_meta
from linemq.broker.server.tls import tls_context
from linemq.broker.server.topic_deletion import delete_topic
from linemq.broker.storage import checksum
from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.fsio import fsync_dir
from linemq.broker.storage.handles import raise_open_files_limit
from linemq.broker.storage.log_store import LogStore
from linemq.broker.storage.records import Meta, Record, StorageError
from linemq.broker.storage.store import FileStore
from linemq.broker.storage.ticket import Ticket
from linemq.broker.storage.topic_log import TopicLog

log = structlog.get_logger(__name__)

STOP_GRACE: Final = 5.0
"""Seconds a stopping broker waits for commands already running (a HISTORY read, a
replay), so that their replies still go out before ``ERR server shutting down``."""
SHUTTING_DOWN: Final = "server shutting down"
DRAIN_POLL: Final = 0.01
"""Seconds between looks at what is still in flight during ``--shutdown-grace``."""


class Broker:
    def __init__(self, config: Config, http: StartHttp | None = None) -> None:
        """``http`` starts the HTTP side for ``--http-port`` (the CLI passes ``ops``' own)."""
        if config.http_port is not None and http is None:
            raise ValueError("http_port is set but no HTTP side was given to start")
        self.config = config
        self._start_http = http
        self.face = BrokerFace(self)  # all that STATS and the HTTP side see of the broker
        self.tickets = Tickets()
        self.damage = DamageReport()  # what storage and journals found damaged on disk
        self.store = FileStore(
            Path(config.data_dir), segment_bytes=config.segment_bytes, damage=self.damage
        )
        self.store.sync_policy = self._logs_written
        self.logs: LogStore = self.store  # publishing goes through the seam alone
        self.connections: set[Connection] = set()
        self.unauthenticated: set[Connection] = set()  # with --auth-file
        self.holding: set[Connection] = set()
        self.gen = 1
        self.durable_gen = 0
        self._ids = IdGenerator()
        self._outputs: set[Connection] = set()
        self._appended = False  # the store holds appends for the next commit
        self._gathered: dict[str, list[str]] = {}  # this tick's PUBs, by topic (publish_batch)
        self._gathered_count = 0
        self._logs_to_sync: list[Syncable] = []  # written by this tick's commits
        self._tickets: list[Ticket] = []  # this tick's commits, resolved once durable
        self._syncing: deque[tuple[int, list[Ticket]]] = deque()  # tickets by generation
        self._waiting: dict[Writable, list[Slot]] = {}
        self.published: dict[str, int] = {}
        self.fanout_sent = 0
        self.publish_latency = Histogram()
        self.ready = False
        self._scheduled = False
        self._ticking = False
        self._last_through: Connection | None = None  # see _written_through
        self._server: asyncio.Server | None = None
        self._stopped = asyncio.Event()
        self._hurry = asyncio.Event()  # a second stop request: skip the rest of the grace
        self.started_at = time.time()
        self.users: Users | None = (
            load_users(config.auth_file) if config.auth_file is not None else None
        )
        self.ssl = tls_context(config)

    # -- start and stop ------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        started = time.perf_counter()
        raise_open_files_limit()
        self.store.open()
        ctx = DeliveryContext.build(
            loop, self.config, self._publish_internal, self.schedule, self.damage
        )
        data_dir = Path(self.config.data_dir)
        self.router = Router(self.store, data_dir / "groups", ctx)
        self.router.open()
        self.dedup = DedupIndex(data_dir / "dedup", self.config.dedup_window)
        await upkeep.load_dedup(self.store, self.dedup, self.config.dedup_window)
        upkeep.keep_offsets_unique(self.store, self.router)
        self.dead_letters = DeadLetters(
            self.store,
            data_dir / "replays",
            self._publish_internal,
            ctx.journal,
            max_letters=self.config.dlq_max_letters,
        )
        self.handlers = Handlers(self)
        self.durability = Durability(
            loop, self.config.fsync, self.config.fsync_interval_ms, self._on_durable
        )
        self.durability.start()
        self._retention_task = loop.create_task(
            upkeep.retention_loop(self.store, self.router, self.config)
        )
        self.http: HttpServer | None = None
        if self._start_http is not None and self.config.http_port is not None:
            self.http = await self._start_http(self.face)
        self._server = await loop.create_server(
            lambda: Connection(self),
            self.config.host,
            self.config.port,
            reuse_address=True,
            backlog=4096,
            ssl=self.ssl,
        )
        if self.users is None:
            exposed = exposed_addresses(self.config)
            if exposed:
                log.warning(
                    "AUTHENTICATION IS OFF on a non-loopback address: anyone who can reach "
                    "it can publish, consume, replay and purge. Use --auth-file.",
                    addresses=exposed,
                )
        self.ready = True
        log.info(
            "listening",
            host=self.config.host,
            port=self.port,
            data_dir=str(data_dir),
            fsync=self.config.fsync,
            auth=self.users is not None,
            tls=self.ssl is not None,
            checksums=checksum.IMPLEMENTATION,
            topics=len(self.store.topics()),
            recovery_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def serve_until_stopped(self) -> None:
        await self._stopped.wait()

    def request_stop(self) -> None:
        """Stop (see ``stop``); asked again while stopping, the rest of the grace is skipped."""
        if self._stopped.is_set():
            self._hurry.set()
        self._stopped.set()

    async def stop(self) -> None:
        """Stop accepting, give in-flight messages the grace to be acked, write and fsync
        everything, tell clients goodbye, close."""
        told = await self._drain()
        self.ready = False
        self._retention_task.cancel()
        if self.http is not None:
            await self.http.close()
        if self._server is not None:
            self._server.close()
        await self.handlers.finish(STOP_GRACE)
        self._tick()
        await self.durability.close()
        self.router.close()
        for conn in list(self.connections):
            reason = SHUTTING_DOWN
            if conn in told:  # told as the grace began: what it is owed, then the close
                conn.shut_down(b"", reason)
            else:
                conn.shut_down(closing(reason) if conn.notices else replies.err(reason), reason)
        self._flush_outputs()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        self.store.close()
        for journal in self.router.journals() + self.dead_letters.journals():
            journal.close()
        if self._server is not None:
            await self._server.wait_closed()
        log.info("stopped")

    async def _drain(self) -> set[Connection]:
        """``--shutdown-grace``: with messages in flight, stop listening and delivering, tell
        connections that asked for notices ``CLOSING server shutting down`` (they stay open
        and are answered), and wait until nothing is in flight, the grace is over, or a
        second stop request. Acks received meanwhile are journaled like any: those messages
        are not delivered again after a restart. Returns the connections told."""
        grace = self.config.shutdown_grace
        inflight = self.router.inflight()
        if grace <= 0 or not inflight:
            return set()
        self.ready = False
        if self._server is not None:
            self._server.close()
        self.router.stop_delivering()
        told = {conn for conn in self.connections if conn.notices}
        for conn in told:
            conn.send(closing(SHUTTING_DOWN))
        log.info("draining", inflight=inflight, grace=grace)
        started = self.loop.time()
        deadline = started + grace
        while self.router.inflight() and not self._hurry.is_set():
            left = deadline - self.loop.time()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):  # a poll: acks come in on many paths
                await asyncio.wait_for(self._hurry.wait(), min(left, DRAIN_POLL))
        inflight = self.router.inflight()
        waited = round(self.loop.time() - started, 3)
        log.info("drained", inflight_left=inflight, waited_s=waited)
        return told

    async def delete_group(self, topic: str, group: str, force: bool) -> None:
        """Delete a consumer group (router.delete); returns once that is durable on disk,
        so a crash after ``OK deleted`` never brings it back."""
        folders = self.router.delete(topic, group, force)
        self.schedule()  # members' replies and the groups' last writes settle
        try:
            if is_pattern(topic):
                await self.router.patterns.save()
            for folder in sorted(set(folders)):
                await asyncio.to_thread(fsync_dir, folder)
        except OSError as exc:
            raise StorageError(str(exc)) from exc

    async def delete_topic(self, topic: str, force: bool) -> None:
        """``DELETE <topic>`` (topic_deletion.py); returns once the removal is durable."""
        await delete_topic(self, topic, force)

    def flush(self) -> None:
        """Write what was appended so far now, as the next tick would (a topic about to be
        deleted must have nothing left to write)."""
        self._tick()

    async def purge(self, topic: str) -> int:
        """Delete every record of ``topic``; offsets go on. Returns how many were deleted."""
        return await upkeep.purge(self.store, self.router, topic)

    # -- connections ---------------------------------------------------------------

    def framer(self) -> LineFramer:
        return LineFramer(self.config.max_line_bytes)

    def connected(self, conn: Connection) -> None:
        self.connections.add(conn)

    def disconnected(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.holding.discard(conn)
        self._outputs.discard(conn)
        self.router.disconnect(conn.client)
        self.schedule()

    def journals_pending(self) -> bool:
        """Group journal lines not written yet (the next tick writes them)."""
        return bool(self.router.ctx.dirty_journals)

    def mark_output(self, conn: Connection) -> None:
        self._outputs.add(conn)
        if not self._ticking:  # a running tick flushes every output as its last step
            self.schedule()

    # -- publishing ----------------------------------------------------------------

    def publish(self, conn: Connection, topic: str, msg: str) -> None:
        """A PUB that passed the handler's checks: publish it, and let later PUBs to
        ``topic`` on this connection skip those checks (``Connection.vet``)."""
        try:
            self.store.topic(topic)  # it counts against --max-topics from now on
        except (OSError, StorageError, ValueError) as e:
            log.error("append_failed", topic=topic, error=str(e))
            conn.reply(replies.storage_unavailable(e))
            return
        self.publish_batch(conn, PubBatch.of(topic, msg))
        conn.vet(topic)

    def publish_batch(self, conn: Connection, batch: PubBatch) -> None:
        """PUBs to vetted topics, any mix of them, answered by one reply slot.

        Reads spread over several topics are gathered for the tick and appended
        as one batch, one append per topic (``append_gathered``); ``OK published``
        goes out once the commit that writes them is durable per --fsync. A lone
        PUB in an idle iteration is written and answered at once.
        """
        now = time.time()
        if len(batch) == 1 and self._idle_iteration(conn) and self._write_through(conn, batch, now):
            return
        gathered = self._gathered
        if len(batch.by_topic) == 1 and batch.order[0] not in gathered:
            # One topic (a pipelined publisher's read): appended now, so its encoding
            # is done between reads rather than all in the tick; gathering such reads
            # measured more CPU per message, not less.
            self.logs.append_batch(batch.by_topic, now, self._ids.many(len(batch), now))
        else:
            for topic, msgs in batch.by_topic.items():
                have = gathered.get(topic)
                if have is None:
                    gathered[topic] = msgs
                else:
                    have += msgs
            self._gathered_count += len(batch)
        self._appended_now()
        order = batch.order
        key: str | list[str] = order[0] if len(batch.by_topic) == 1 else order
        wait_for(conn, self.logs.ticket, (key, replies.PUBLISHED, len(order)))

    def append_gathered(self) -> None:
        """Append the PUBs gathered so far: before the commit, and before anything that
        sees offsets (any other command, a PUT, a dead letter) so they count as sent first."""
        if self._gathered:
            gathered, self._gathered = self._gathered, {}
            now = time.time()  # not earlier than a record appended directly meanwhile
            self.logs.append_batch(gathered, now, self._ids.many(self._gathered_count, now))
            self._gathered_count = 0

    def _write_through(self, conn: Connection, batch: PubBatch, now: float) -> bool:
        """Write a lone PUB now; its reply leaves before fanout and groups. False: it
        needs the commit (an unknown topic, a segment to roll)."""
        topic = batch.order[0]
        try:
            record = self.store.write_through(
                topic, batch.by_topic[topic][0], now, self._ids.next(now), conn.published
            )
        except StorageError as e:
            log.error("write_failed", topic=topic, error=str(e))
            conn.reply(replies.storage_unavailable(e))
            return True
        if record is None:
            return False
        self._dispatch(topic, [record], now)
        self._through(conn)
        return True

    def _through(self, conn: Connection) -> None:
        """``conn``'s publishes were written outside the tick, at once.

        Later connections in this iteration batch; while one connection alone
        writes through, iteration after iteration, the tick (8% of a window-1 PUB)
        is skipped. A second connection writing through schedules it.
        """
        if conn is not self._last_through:
            self._last_through = conn
            self.schedule()

    def _idle_iteration(self, conn: Connection) -> bool:
        """No tick pending: nothing else happened in this loop iteration yet.

        Then a publish has nothing to batch with, and writing it at once saves its
        round trip the tick. Later connections in the same iteration find a tick
        scheduled and batch as usual, so many publishers still share one write.
        With ``--fsync always`` every reply waits for an fsync: no shortcut.
        """
        return (
            not self._scheduled
            and not self._ticking
            and not conn.holds_replies
            and not self.durability.replies_wait
        )

    def publish_put(self, conn: Connection, put: Put) -> None:
        """A v2 publish: dedup by publisher id, metadata, and a reply naming the offset."""
        self.append_gathered()
        now = time.time()
        if put.pid is not None:
            seen = self.dedup.lookup(put.topic, put.pid, now)
            if seen is not None:
                reply = put_reply(seen.offset, seen.id, duplicate=True)
                topic_log = self.store.get(put.topic)
                if topic_log is not None and seen.offset > topic_log.written_offset:
                    wait_for(conn, self.logs.ticket, (put.topic, reply, 1))  # with the original
                else:
                    conn.reply(reply)
                return
        meta = stored_meta(put, now)
        text = record_text(put.payload, meta)
        appended = self.logs.append(put.topic, [text], now, [self._ids.next(now)], meta)
        if appended.ticket.done():  # refused before it was appended
            conn.reply(replies.storage_unavailable(appended.ticket.errors[put.topic]))
            return
        self._appended_now()
        if put.pid is not None:
            self.dedup.remember(put.topic, appended.records[0])
        wait_for(conn, appended.ticket, (appended, b"", 1))

    def _publish_internal(self, topic: str, msg: str, meta: Meta | None = None) -> Record:
        """Dead letters and replays: appended like any publish, with no one waiting.

        A dead-letter topic counts against --max-topics like any other (ValueError).
        """
        store = self.store
        if store.get(topic) is None and len(store.topics()) >= self.config.max_topics:
            raise ValueError("too many topics")
        self.append_gathered()
        now = time.time()
        appended = self.logs.append(topic, [msg], now, [self._ids.next(now)], meta)
        if appended.ticket.done():
            raise appended.ticket.errors[topic]
        self._appended_now()
        return appended.records[0]

    def _appended_now(self) -> None:
        if not self._appended:
            self._appended = True
            self.schedule()

    def _logs_written(self, logs: list[TopicLog], ticket: Ticket | None) -> None:
        """The store's sync policy: its logs are fsynced per --fsync with the journals,
        and a commit's ticket resolves once that is done (see ``_commit``)."""
        if ticket is None:  # written through, outside a commit (never under --fsync always)
            for topic_log in logs:
                self.durability.note_written(topic_log)
            return
        self._logs_to_sync += logs
        self._tickets.append(ticket)

    # -- the tick ------------------------------------------------------------------

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._scheduled = False
        ctx = self.router.ctx
        if not (
            self._appended
            or self._waiting
            or self._outputs
            or self.holding
            or ctx.to_pump
            or ctx.dirty_journals
            or self.tickets
        ):
            return  # all a written-through publish asked for: the rest of its iteration batches
        self._ticking = True
        try:
            self._commit()
        finally:
            self._ticking = False

    def _commit(self) -> None:
        gen = self.gen
        self.gen += 1
        # Dispatching can publish again (dead letters), so commit until quiet.
        self.router.ctx.run_pumps()
        self.append_gathered()
        while self._appended:
            self._appended = False
            done = self.logs.commit()
            for topic, records in done.failed.items():
                self.dedup.forget(topic, records)  # never stored: a retry is not a duplicate
            now = time.time()
            for topic, records in done.written.items():
                self._dispatch(topic, records, now)
        written: list[Syncable] = self._logs_to_sync
        self._logs_to_sync = []
        ctx = self.router.ctx
        while ctx.dirty_journals:
            dirty, ctx.dirty_journals = ctx.dirty_journals, {}
            for journal in dirty:
                self._write(journal, gen, written)
        for target in list(self._waiting):  # a reply on something with nothing new to write
            self._write(target, gen, written)
        if self._tickets:
            self._syncing.append((gen, self._tickets))
            self._tickets = []
        self._on_durable(gen if self.durability.written(gen, written) else 0)

    def _dispatch(self, topic: str, records: list[Record], now: float) -> None:
        """Records just written: count them, then out to subscribers and groups."""
        self.published[topic] = self.published.get(topic, 0) + len(records)
        observe = self.publish_latency.observe
        if len(records) == 1:  # a lone publish, most of them at window 1
            observe(now - records[0].ts)
        else:
            ts, same = records[0].ts, 0
            for record in records:  # runs share a timestamp: one observation per run
                if record.ts != ts:
                    observe(now - ts, same)
                    ts, same = record.ts, 0
                same += 1
            observe(now - ts, same)
        self.fanout_sent += self.router.on_written(topic, records)

    def _write(self, target: Writable, gen: int, written: list[Syncable]) -> bool:
        """Write one log or journal and settle the replies that waited for it."""
        waiting = self._waiting.pop(target, ())
        try:
            if not target.write():  # a journal finishing a rewrite: its replies wait
                if waiting:
                    self._waiting[target] = waiting
                return True
        except StorageError as e:
            log.error("write_failed", target=repr(target), error=str(e), replies=len(waiting))
            error = replies.storage_unavailable(e)
            for slot in waiting:
                slot.data = error * slot.count
            return False
        written.append(target)
        for slot in waiting:
            slot.data = slot.reply * slot.count if slot.count > 1 else slot.reply
            slot.gen = gen
        return True

    def committed(self) -> asyncio.Future[None]:
        """A ticket: done once every change made so far is written and durable per --fsync.

        The next tick writes those changes as generation ``gen``; a waiting ticket makes
        that tick run even with nothing to write, so the ticket is always settled.
        """
        ticket = self.tickets.take(self.gen)
        self.schedule()
        return ticket

    def reply_after_write(
        self, conn: Connection, target: Writable, reply: bytes, count: int = 1
    ) -> None:
        """``reply`` (``count`` times) once ``target``'s pending bytes are written, and
        durable per --fsync."""
        if conn.join_waiting(target, reply, count):
            return
        waiting = self._waiting.get(target)
        if waiting is None:
            waiting = self._waiting[target] = []
            self.schedule()
        waiting.append(conn.reply_later(target, reply, count))

    def _on_durable(self, gen: int) -> None:
        """Release what waited for ``gen`` (0: nothing new) and flush every connection."""
        if gen > self.durable_gen:
            self.durable_gen = gen
            if self.tickets:
                self.tickets.settle(gen)
        while self._syncing and self._syncing[0][0] <= self.durable_gen:
            for ticket in self._syncing.popleft()[1]:
                ticket.resolve()
        for conn in list(self.holding):
            conn.release(self.durable_gen)
        self._flush_outputs()

    def _flush_outputs(self) -> None:
        outputs, self._outputs = self._outputs, set()
        for conn in outputs:
            conn.flush()
