"""The engine: the commit tick and the publish path, below the I/O faces.

Everything that changes state (publishes, journaled deliveries and acks) only
appends to in-memory buffers. Once per loop iteration a tick writes them: the
store commits every topic appended to (one write per touched segment file,
however many topics and connections), then new records go out to subscribers
and groups, then group journals are written, then what waited for a write is
settled once that generation is durable per --fsync, and the faces are told to
release their replies (``Replies``). A store that answers later (a database) says
what a commit stored when it knows: its records go out then, each topic's in
commit order, and what failed never (commit_order.py).

One shortcut: a lone PUB that finds no tick pending (nothing else has happened
in this iteration) is written and answered at once, and dispatched to
subscribers after its reply is out. A publisher that waits for each reply gets
its round trip without the tick; the next connection in the same iteration
batches as usual.

The engine builds no wire bytes: a publish returns the ticket its reply waits
for (or the error to answer with), and a write waiter is told ``written`` or
``failed``; the server renders those.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import structlog

from linemq.broker.config import Config
from linemq.broker.delivery.context import DeliveryContext, Encoder
from linemq.broker.delivery.dead_letters import DeadLetters
from linemq.broker.delivery.router import Router
from linemq.broker.engine import upkeep
from linemq.broker.engine.commit_order import CommitOrder
from linemq.broker.engine.dedup import DedupIndex, Seen
from linemq.broker.engine.durability import Durability, Syncable, Writable
from linemq.broker.engine.ids import IdGenerator
from linemq.broker.engine.ports import Publisher, Replies, WriteWaiter
from linemq.broker.engine.pub_batch import PubBatch
from linemq.broker.engine.tickets import Tickets
from linemq.broker.observe.histogram import Histogram
from linemq.broker.protocol.names import is_pattern
from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.file_state import FileStateStore
from linemq.broker.storage.handles import raise_open_files_limit
from linemq.broker.storage.log_store import Commit, LogStore, Store
from linemq.broker.storage.records import Meta, Record, StorageError
from linemq.broker.storage.state_store import StateStore
from linemq.broker.storage.store import FileStore
from linemq.broker.storage.ticket import Appended, Ticket

log = structlog.get_logger(__name__)


class Engine:
    def __init__(
        self,
        config: Config,
        replies: Replies,
        encoder: Encoder,
        store: Store | None = None,
        state: StateStore | None = None,
    ) -> None:
        """``encoder``: the server's wire format, for what delivery sends. ``store``: topic
        logs kept elsewhere than the data directory's files (open already); ``state``:
        groups, replays, schedules and dedup markers kept elsewhere than journal files
        there (each independently: ``linemq serve --store`` passes PostgreSQL's both)."""
        self.config = config
        self._replies = replies
        self._encoder = encoder
        self.tickets = Tickets()
        self.damage = DamageReport()  # what storage and journals found damaged on disk
        self.files: FileStore | None = None  # the file store's own shortcut (_write_through)
        if store is None:
            store = self.files = FileStore(
                Path(config.data_dir), segment_bytes=config.segment_bytes, damage=self.damage
            )
            self.files.sync_policy = self._logs_written
        self.store: Store = store
        self.logs: LogStore = self.store  # publishing goes through the seam alone
        self._order = CommitOrder(self._dispatch, self._forget, self._commits_settled)
        if state is None:
            state = FileStateStore(
                Path(config.data_dir), sync_each_write=config.fsync == "always", damage=self.damage
            )
        self.state: StateStore = state
        self.gen = 1
        self.durable_gen = 0
        self._ids = IdGenerator()
        self._appended = False  # the store holds appends for the next commit
        self._gathered: dict[str, list[str]] = {}  # this tick's PUBs, by topic (publish_batch)
        self._gathered_count = 0
        self._logs_to_sync: list[Syncable] = []  # written by this tick's commits
        self._tickets: list[Ticket] = []  # this tick's commits, resolved once durable
        self._syncing: deque[tuple[int, list[Ticket]]] = deque()  # tickets by generation
        self._waiting: dict[Writable, list[WriteWaiter]] = {}
        self.published: dict[str, int] = {}
        self.fanout_sent = 0
        self.publish_latency = Histogram()
        self._scheduled = False
        self.ticking = False
        self._last_through: object = None  # see _through

    # -- open and close ------------------------------------------------------------

    async def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Recover the logs, groups and publisher ids; start fsyncs and retention."""
        self.loop = loop
        raise_open_files_limit()
        if self.files is not None:
            self.files.open()
        config = self.config
        ctx = DeliveryContext.build(
            loop,
            config,
            self.publish_internal,
            self.schedule,
            self._encoder,
            self.state,
            self.damage,
        )
        self.router = Router(self.store, ctx)
        self.router.open()
        self.dedup = DedupIndex(self.state, config.dedup_window)
        await upkeep.load_dedup(self.store, self.dedup, config.dedup_window)
        upkeep.keep_offsets_unique(self.store, self.router)
        self.dead_letters = DeadLetters(
            self.store, self.state, self.publish_internal, max_letters=config.dlq_max_letters
        )
        self.durability = Durability(loop, config.fsync, config.fsync_interval_ms, self._on_durable)
        self.durability.start()
        self._retention_task = loop.create_task(
            upkeep.retention_loop(self.store, self.router, config)
        )

    def stop_retention(self) -> None:
        self._retention_task.cancel()

    async def write_all(self) -> None:
        """Write and fsync everything still buffered, whatever --fsync says; close groups.

        Commits the store has not settled yet are waited for (what dispatching them
        publishes, dead letters, is committed in turn)."""
        self._tick()
        while (unsettled := self._order.first_unsettled()) is not None:
            settled: asyncio.Future[None] = self.loop.create_future()

            def wake(_: Commit, settled: asyncio.Future[None] = settled) -> None:
                if not settled.done():
                    settled.set_result(None)

            unsettled.on_settled(wake)
            await settled
            self._tick()
        await self.durability.close()
        self.router.close()

    def close(self) -> None:
        self.store.close()
        self.state.close()

    # -- operations ----------------------------------------------------------------

    async def delete_group(self, topic: str, group: str, force: bool) -> None:
        """Delete a consumer group (router.delete); returns once that is durable on disk,
        so a crash after ``OK deleted`` never brings it back."""
        topics = self.router.delete(topic, group, force)
        self.schedule()  # members' replies and the groups' last writes settle
        try:
            if is_pattern(topic):
                await self.router.patterns.save()
        except OSError as exc:
            raise StorageError(str(exc)) from exc
        await self.state.sync_deletes(topics)

    async def purge(self, topic: str) -> int:
        """Delete every record of ``topic``; offsets go on. Returns how many were deleted."""
        return await upkeep.purge(self.store, self.router, topic)

    def flush(self) -> None:
        """Write what was appended so far now, as the next tick would (a topic about to be
        deleted must have nothing left to write)."""
        self._tick()

    def journals_pending(self) -> bool:
        """Group journal lines not written yet (the next tick writes them)."""
        return bool(self.router.ctx.dirty_journals)

    # -- publishing ----------------------------------------------------------------

    def publish_batch(self, conn: Publisher, batch: PubBatch) -> Ticket | StorageError | None:
        """PUBs to vetted topics, any mix of them, answered by one reply.

        Reads spread over several topics are gathered for the tick and appended
        as one batch, one append per topic (``append_gathered``). Returns the
        ticket the reply waits for (durable per --fsync); None when a lone PUB in
        an idle iteration was written and answered at once (``conn.published``);
        or the error to answer it with, when that write failed.
        """
        now = time.time()
        if len(batch) == 1 and self._idle_iteration(conn):
            try:
                if self._write_through(conn, batch, now):
                    return None
            except StorageError as e:
                return e
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
        return self.logs.ticket

    def append_gathered(self) -> None:
        """Append the PUBs gathered so far: before the commit, and before anything that
        sees offsets (any other command, a PUT, a dead letter) so they count as sent first."""
        if self._gathered:
            gathered, self._gathered = self._gathered, {}
            now = time.time()  # not earlier than a record appended directly meanwhile
            self.logs.append_batch(gathered, now, self._ids.many(self._gathered_count, now))
            self._gathered_count = 0

    def _write_through(self, conn: Publisher, batch: PubBatch, now: float) -> bool:
        """Write a lone PUB now; its reply leaves before fanout and groups. False: it
        needs the commit (an unknown topic, a segment to roll). Raises StorageError."""
        topic = batch.order[0]
        if self.files is None:
            return False
        try:
            record = self.files.write_through(
                topic, batch.by_topic[topic][0], now, self._ids.next(now), conn.published
            )
        except StorageError as e:
            log.error("write_failed", topic=topic, error=str(e))
            raise
        if record is None:
            return False
        self._dispatch(topic, [record], now)
        self._through(conn)
        return True

    def _through(self, conn: Publisher) -> None:
        """``conn``'s publishes were written outside the tick, at once.

        Later connections in this iteration batch; while one connection alone
        writes through, iteration after iteration, the tick (8% of a window-1 PUB)
        is skipped. A second connection writing through schedules it.
        """
        if conn is not self._last_through:
            self._last_through = conn
            self.schedule()

    def _idle_iteration(self, conn: Publisher) -> bool:
        """No tick pending: nothing else happened in this loop iteration yet.

        Then a publish has nothing to batch with, and writing it at once saves its
        round trip the tick. Later connections in the same iteration find a tick
        scheduled and batch as usual, so many publishers still share one write.
        With ``--fsync always`` every reply waits for an fsync: no shortcut.
        """
        return (
            not self._scheduled
            and not self.ticking
            and not conn.holds_replies
            and not self.durability.replies_wait
        )

    def duplicate(self, topic: str, pid: str, now: float) -> Seen | None:
        """What an earlier publish with publisher id ``pid`` appended, within the dedup
        window: its ``Appended`` (a repeat waits for it while its ticket is pending, then
        is answered with its offset) or, read back at start-up, its record."""
        return self.dedup.lookup(topic, pid, now)

    def append(self, topic: str, text: str, meta: Meta, now: float) -> Appended:
        """One record with metadata (a v2 publish), remembered by its publisher id.

        The ticket is already done, with the topic's error, if it was refused."""
        appended = self.logs.append(topic, [text], now, [self._ids.next(now)], meta)
        if appended.ticket.done():  # refused before it was appended
            return appended
        self._appended_now()
        if meta.pid is not None:
            self.dedup.remember(topic, appended)
        return appended

    def publish_internal(self, topic: str, msg: str, meta: Meta | None = None) -> Appended:
        """Dead letters, replays and schedules: appended like any publish, with no reply
        waiting; awaiting the result gives the record with its offset once committed.

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
        return appended

    def _appended_now(self) -> None:
        if not self._appended:
            self._appended = True
            self.schedule()

    def _logs_written(self, logs: Sequence[Syncable], ticket: Ticket | None) -> None:
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
            or ctx.to_pump
            or ctx.dirty_journals
            or self.tickets
            or self._replies.pending()
        ):
            return  # all a written-through publish asked for: the rest of its iteration batches
        self.ticking = True
        try:
            self._commit()
        finally:
            self.ticking = False

    def _commit(self) -> None:
        gen = self.gen
        self.gen += 1
        # Dispatching can publish again (dead letters), so commit until quiet.
        self.router.ctx.run_pumps()
        self.append_gathered()
        while self._appended:
            self._appended = False
            done = self.logs.commit()
            if not done.settled or self._order.held:
                self._order.hold(done, gen)
                continue
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

    def _forget(self, topic: str, records: list[Record]) -> None:
        self.dedup.forget(topic, records)  # never stored: a retry is not a duplicate

    def _commits_settled(self) -> None:
        """A commit the store settled later went out: what waited for it may go now."""
        if self.tickets:
            self.tickets.settle(self._order.settled_gen(self.durable_gen))
        if not self.ticking:
            self.schedule()  # groups' journal lines, replies, dead letters published

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
        """Write one log or journal and settle what waited for it."""
        waiting = self._waiting.pop(target, ())
        try:
            if not target.write():  # a journal finishing a rewrite: its replies wait
                if waiting:
                    self._waiting[target] = waiting
                return True
        except StorageError as e:
            log.error("write_failed", target=repr(target), error=str(e), replies=len(waiting))
            for waiter in waiting:
                waiter.failed(e)
            return False
        written.append(target)
        for waiter in waiting:
            waiter.written(gen)
        return True

    def committed(self) -> asyncio.Future[None]:
        """A ticket: done once every change made so far is written and durable per --fsync.

        The next tick writes those changes as generation ``gen``; a waiting ticket makes
        that tick run even with nothing to write, so the ticket is always settled (once
        the store has settled the commits made up to that tick).
        """
        ticket = self.tickets.take(self.gen)
        self.schedule()
        return ticket

    def after_write(self, target: Writable, waiter: WriteWaiter) -> None:
        """Tell ``waiter`` once ``target``'s pending bytes are written (the next tick)."""
        waiting = self._waiting.get(target)
        if waiting is None:
            waiting = self._waiting[target] = []
            self.schedule()
        waiting.append(waiter)

    def _on_durable(self, gen: int) -> None:
        """Settle what waited for ``gen`` (0: nothing new); the faces release replies.

        Durability tickets and durable replies also wait for the store to settle the
        commits made up to their generation (never, with the file and memory stores)."""
        if gen > self.durable_gen:
            self.durable_gen = gen
        while self._syncing and self._syncing[0][0] <= self.durable_gen:
            for ticket in self._syncing.popleft()[1]:
                ticket.resolve()
        done = self.durable_gen
        if self._order.unsettled:
            done = self._order.settled_gen(done)
        if self.tickets:
            self.tickets.settle(done)
        self._replies.release(done)
