"""The broker's TCP side: listening, connections, start and stop, around the engine.

The engine (``engine/engine.py``) runs the commit tick and the publish path and
builds no wire bytes; this side renders what it returns (``OK published``, the
storage errors) and releases every connection's held replies when the engine
says a generation is durable (``release``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Final

import structlog

from linemq.broker.auth import Users, exposed_addresses, load_users
from linemq.broker.config import Config
from linemq.broker.engine.dedup import first_record
from linemq.broker.engine.durability import Writable
from linemq.broker.engine.engine import Engine
from linemq.broker.engine.pub_batch import PubBatch
from linemq.broker.protocol import LineFramer, replies
from linemq.broker.protocol.v2 import Put, closing, put_reply
from linemq.broker.server.connection import Connection
from linemq.broker.server.deliveries import ENCODER
from linemq.broker.server.face import BrokerFace, HttpServer, StartHttp
from linemq.broker.server.handlers import Handlers
from linemq.broker.server.publishing import Repeat, wait_for
from linemq.broker.server.put_records import record_text, stored_meta
from linemq.broker.server.schedules import Schedules
from linemq.broker.server.tls import tls_context
from linemq.broker.server.topic_deletion import delete_topic
from linemq.broker.storage import checksum
from linemq.broker.storage.log_store import Store
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.state_store import StateStore
from linemq.broker.storage.ticket import Appended, Ticket

log = structlog.get_logger(__name__)

STOP_GRACE: Final = 5.0
"""Seconds a stopping broker waits for commands already running (a HISTORY read, a
replay), so that their replies still go out before ``ERR server shutting down``."""
SHUTTING_DOWN: Final = "server shutting down"
DRAIN_POLL: Final = 0.01
"""Seconds between looks at what is still in flight during ``--shutdown-grace``."""


class Broker:
    def __init__(
        self,
        config: Config,
        http: StartHttp | None = None,
        store: Store | None = None,
        state: StateStore | None = None,
    ) -> None:
        """``http`` starts the HTTP side for ``--http-port`` (the CLI passes ``ops``' own).
        ``store``: topic logs kept elsewhere than the data directory's files (open already);
        ``state``: groups, replays, schedules and dedup markers kept elsewhere than journal
        files there (``Engine``)."""
        if config.http_port is not None and http is None:
            raise ValueError("http_port is set but no HTTP side was given to start")
        self.config = config
        self._start_http = http
        self.engine = engine = Engine(config, self, ENCODER, store, state)
        self.face = BrokerFace(self)  # all that STATS and the HTTP side see of the broker
        self.damage = engine.damage  # what storage and journals found damaged on disk
        self.store = engine.store
        self.connections: set[Connection] = set()
        self.unauthenticated: set[Connection] = set()  # with --auth-file
        self.holding: set[Connection] = set()
        self._outputs: set[Connection] = set()
        self.ready = False
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
        engine = self.engine
        await engine.open(loop)
        self.router = engine.router
        self.dead_letters = engine.dead_letters
        self.schedules = Schedules(
            loop,
            engine.state.schedules_log(),
            engine.logs,
            engine.dedup,
            engine.publish_internal,
            engine.committed,
            max_schedules=self.config.max_schedules,
            min_every=self.config.schedule_min_every,
        )
        await self.schedules.open()
        self.handlers = Handlers(self)
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
            data_dir=str(Path(self.config.data_dir)),
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
        self.engine.stop_retention()
        self.schedules.close()
        if self.http is not None:
            await self.http.close()
        if self._server is not None:
            self._server.close()
        await self.handlers.finish(STOP_GRACE)
        await self.engine.write_all()
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
        self.engine.close()  # the state store's close writes the schedules' log too
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
        await self.engine.delete_group(topic, group, force)

    async def delete_topic(self, topic: str, force: bool) -> None:
        """``DELETE <topic>`` (topic_deletion.py); returns once the removal is durable."""
        await delete_topic(self, topic, force)

    async def purge(self, topic: str) -> int:
        return await self.engine.purge(topic)

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
        self.engine.schedule()

    def journals_pending(self) -> bool:
        return self.engine.journals_pending()

    def mark_output(self, conn: Connection) -> None:
        self._outputs.add(conn)
        if not self.engine.ticking:  # a running tick flushes every output as its last step
            self.engine.schedule()

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
        """PUBs to vetted topics (``Engine.publish_batch``), answered by one reply slot:
        ``OK published`` each once their commit is durable per --fsync."""
        waits = self.engine.publish_batch(conn, batch)
        if waits is None:  # written through and answered
            return
        if isinstance(waits, Ticket):
            order = batch.order
            key: str | list[str] = order[0] if len(batch.by_topic) == 1 else order
            wait_for(conn, waits, (key, replies.PUBLISHED, len(order)))
        else:
            conn.reply(replies.storage_unavailable(waits))

    def append_gathered(self) -> None:
        self.engine.append_gathered()

    def publish_put(self, conn: Connection, put: Put) -> None:
        """A v2 publish: dedup by publisher id, metadata, and a reply naming the offset."""
        engine = self.engine
        engine.append_gathered()
        now = time.time()
        if put.pid is not None:
            seen = engine.duplicate(put.topic, put.pid, now)
            if isinstance(seen, Appended) and not seen.ticket.done():
                wait_for(conn, seen.ticket, (Repeat(seen), b"", 1))  # with the original
                return
            if seen is not None:
                record = first_record(seen)
                conn.reply(put_reply(record.offset, record.id, duplicate=True))
                return
        meta = stored_meta(put, now)
        appended = engine.append(put.topic, record_text(put.payload, meta), meta, now)
        if appended.ticket.done():  # refused before it was appended
            conn.reply(replies.storage_unavailable(appended.ticket.errors[put.topic]))
            return
        wait_for(conn, appended.ticket, (appended, b"", 1))

    # -- replies -----------------------------------------------------------------

    def reply_after_write(
        self, conn: Connection, target: Writable, reply: bytes, count: int = 1
    ) -> None:
        """``reply`` (``count`` times) once ``target``'s pending bytes are written, and
        durable per --fsync."""
        if conn.join_waiting(target, reply, count):
            return
        self.engine.after_write(target, conn.reply_later(target, reply, count))

    def pending(self) -> bool:
        """Replies held or output queued (``engine.Replies``): the tick must run."""
        return bool(self._outputs or self.holding)

    def release(self, durable_gen: int) -> None:
        """Release what waited for ``durable_gen`` and flush every connection."""
        for conn in list(self.holding):
            conn.release(durable_gen)
        self._flush_outputs()

    def _flush_outputs(self) -> None:
        outputs, self._outputs = self._outputs, set()
        for conn in outputs:
            conn.flush()
