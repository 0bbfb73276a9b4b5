"""One client connection: read lines, hand commands to the handlers, write replies in order.

Replies leave in the order their commands arrived. A reply that must wait (a
publish until its record is written, an ack until it is journaled, a history
read from disk) holds everything queued after it; MSG pushes queue the same way.
Writes are coalesced: what a read's commands queue goes out in one write at the end of
that read, and the broker flushes every other connection once per tick.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Final, Protocol, cast

import structlog

from linemq.broker.auth import User, Users
from linemq.broker.config import Config
from linemq.broker.delivery.clients import GONE, ClientState
from linemq.broker.delivery.router import Router
from linemq.broker.engine.engine import Engine
from linemq.broker.engine.pub_batch import PubBatch
from linemq.broker.protocol import (
    BAD_TERMINATOR,
    LINE_TOO_LONG,
    Command,
    LineFramer,
    ProtocolError,
    PutHeader,
    build_put,
    parse_line,
    replies,
)
from linemq.broker.protocol.runs import ack_ids, only_argument, pub_bodies, pub_line, pub_lines
from linemq.broker.protocol.schedules import ScheduleHeader
from linemq.broker.protocol.v2 import closing
from linemq.broker.storage.records import StorageError

log = structlog.get_logger(__name__)

VETTED_TOPICS: Final = 16384  # a publisher spread over 10,000 topics stays on the fast path
UNAUTHENTICATED_LINE_BYTES: Final = 4096
"""The longest line before AUTH succeeds (with --auth-file): enough for AUTH and HELLO,
and a stranger's connection holds kilobytes, not --max-line-bytes."""
HELD_FOR_CATCH_UP: Final = 1 << 20
"""Pushes a catch-up reader may queue behind a reply still waiting before it waits too."""


class CommandHandlers(Protocol):
    def dispatch(self, conn: Connection, command: Command) -> None: ...
    def ack_run(self, conn: Connection, ids: list[str]) -> None: ...


class Host(Protocol):
    """What a connection asks of the server that accepted it (``server.app.Broker``)."""

    @property
    def config(self) -> Config: ...
    @property
    def users(self) -> Users | None: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def router(self) -> Router: ...
    @property
    def handlers(self) -> CommandHandlers: ...
    @property
    def connections(self) -> Collection[Connection]: ...
    @property
    def unauthenticated(self) -> set[Connection]: ...
    @property
    def holding(self) -> set[Connection]:
        """Connections with a reply held: the tick releases them."""
        ...

    def framer(self) -> LineFramer: ...
    def connected(self, conn: Connection) -> None: ...
    def disconnected(self, conn: Connection) -> None: ...
    def publish_batch(self, conn: Connection, batch: PubBatch) -> None: ...
    def journals_pending(self) -> bool: ...
    def mark_output(self, conn: Connection) -> None: ...


class Slot:
    """A reply whose bytes are not known yet; ``fill`` releases it.

    Replies waiting for the same write (pipelined publishes to one topic) share
    one slot: ``count`` of them, each ``reply`` once the write has succeeded.
    """

    __slots__ = ("conn", "count", "data", "gen", "reply", "target")

    def __init__(self, conn: Connection, target: object = None, reply: bytes = b"") -> None:
        self.conn = conn
        self.data: bytes | None = None
        self.gen = 0
        self.target = target
        self.reply = reply
        self.count = 1

    def fill(self, data: bytes, *, durable: bool = False) -> None:
        broker = self.conn.broker
        engine = broker.engine
        self.data = data
        self.gen = engine.gen if durable else 0
        if durable:
            engine.schedule()
        self.conn.release(engine.durable_gen)
        broker.mark_output(self.conn)

    def written(self, gen: int) -> None:
        """What it waited for is written as generation ``gen`` (``Engine.after_write``)."""
        self.data = self.reply * self.count if self.count > 1 else self.reply
        self.gen = gen

    def failed(self, error: StorageError) -> None:
        self.data = replies.storage_unavailable(error) * self.count


class Connection(asyncio.Protocol):
    def __init__(self, broker: Host) -> None:
        self.broker = broker
        self.framer = broker.framer()
        self.client = ClientState(self)
        self.notices = False  # HELLO … notices: say CLOSING <reason> before closing
        self.transport: asyncio.Transport | None = None
        self.peer: object = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._held: deque[bytes | Slot] = deque()  # replies behind one still waiting
        self._held_bytes = 0  # of the bytes items in _held: output pending like _out
        self._closing = False
        self._eof = False
        self._deferring = False
        self._deferred: list[bytes] = []
        self._put: PutHeader | ScheduleHeader | None = None  # a payload is expected
        self.vetted: set[str] = set()
        self._pubs = PubBatch()  # this read's PUBs so far, appended before any other command
        self._writing_paused = False
        self._blocked = False
        self._reading = False
        self._writable_waiters: list[asyncio.Future[None]] = []
        self._paused_at = 0.0
        self.user: User | None = None
        self.auth_failures = 0
        self._auth_timer: asyncio.TimerHandle | None = None
        self.opened = time.monotonic()
        self.close_reason: str | None = None  # the first reason given; logged at debug

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        broker, config = self.broker, self.broker.config
        if len(broker.connections) >= config.max_connections:
            self._refuse("too many connections")
            return
        if broker.users is not None:
            if len(broker.unauthenticated) >= config.max_unauthenticated:
                self._refuse("too many unauthenticated connections")
                return
            broker.unauthenticated.add(self)
            self.framer.max_line_bytes = min(UNAUTHENTICATED_LINE_BYTES, config.max_line_bytes)
            self._auth_timer = asyncio.get_running_loop().call_later(
                config.auth_timeout, self._auth_expired
            )
        broker.connected(self)
        log.debug("connected", peer=self.peer, connections=len(broker.connections))
        self.reply(replies.BANNER)

    def _refuse(self, reason: str) -> None:
        assert self.transport is not None
        log.warning("connection_refused", peer=self.peer, reason=reason)
        self.close_reason = reason
        self._closing = True
        self.transport.write(replies.err(reason))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        # The slice and compare cost about 750 instructions, 3% of a PING: a
        # connection that never published (a consumer's) skips them.
        if self.vetted and data[:4] == b"PUB " and self._lone_publish(data):
            return
        self.framer.feed(data)
        self._process()

    def _lone_publish(self, data: bytes) -> bool:
        """A read that is one ``PUB`` to a vetted topic, with nothing before it: publish it.

        That is every read of a publisher waiting for each reply, and the framer
        and the loop over lines are its largest cost. False: the read takes the
        general path, which gives the same answer.
        """
        if self._put is not None or self._blocked:
            return False
        line = self.framer.lone_line(data)
        pub = pub_line(line, self.broker.config.max_message_bytes) if line is not None else None
        if pub is None or pub[0] not in self.vetted:
            return False
        self.broker.publish_batch(self, PubBatch.of(pub[0], pub[1]))
        self.broker.router.heard_from(self.client)
        return True

    def block_input(self) -> None:
        """Stop acting on buffered lines until ``unblock_input``: a command that must finish
        before the next one starts (joining a group) is running."""
        self._blocked = True

    def unblock_input(self) -> None:
        self._blocked = False
        if not self._closing:
            self._process()

    def _process(self) -> None:
        """Act on every complete line buffered, then send what that queued in one write.

        The end of a read, not the tick, flushes what its commands queued: a request
        answered at once (PING, HEARTBEAT, a refusal) does not wait for the tick, and
        a pipelined read still gets one write. Replies that wait are held, not queued.
        """
        self._reading = True
        try:
            self._process_lines()
        finally:
            self._reading = False
        if self._out:
            if self.broker.journals_pending():
                # Deliveries this read made (a SUB's, an ACK's next ones) leave after
                # their journal lines are written, at the tick: a kill -9 in between
                # would otherwise lose the attempt they count.
                self.broker.mark_output(self)
            else:
                self.flush()

    def _process_lines(self) -> None:
        framer = self.framer
        whole_read = True  # try once per read to take the rest of it as one run
        while not self._closing and not self._blocked:
            if self._put is not None:
                payload = framer.take(self._put.nbytes)
                if payload is None:
                    break
                header, self._put = self._put, None
                if payload is BAD_TERMINATOR:
                    self.reply(replies.err("payload must be followed by a newline"))
                    continue
                assert isinstance(payload, bytes)
                try:
                    put = (
                        build_put(header, payload)
                        if isinstance(header, PutHeader)
                        else header.build(payload)
                    )
                except ProtocolError as e:
                    self._publish_gathered()
                    self.reply(replies.err(e.reason))
                    continue
                self._publish_gathered()
                self._dispatch(put)
                continue
            line = framer.next()
            if line is None:
                break
            if line is LINE_TOO_LONG:
                self._publish_gathered()
                self.reply(replies.err("line too long"))
                continue
            assert isinstance(line, bytes)
            head = line[:4]  # one slice, compared twice: cheaper than two startswith calls
            if head == b"ACK " and self.trusted:
                ack_id = only_argument(line)
                if ack_id is not None:  # consumers ack every message: skip the general parser
                    self._publish_gathered()
                    ids = [ack_id]
                    if whole_read and framer.buffered:
                        whole_read = False
                        ids += self._rest_of_read(b"ACK ", ack_ids)
                    self.broker.handlers.ack_run(self, ids)
                    continue
            if head == b"PUB ":
                pub = pub_line(line, self.broker.config.max_message_bytes)
                if pub is not None and pub[0] in self.vetted:
                    self._pubs.add(pub[0], pub[1])  # appended with the read's other PUBs
                    if whole_read and framer.buffered:
                        whole_read = False
                        self._rest_of_pubs(self._pubs, pub[0])
                    continue
            self._publish_gathered()
            try:
                command = parse_line(line)
            except ProtocolError as e:
                self.reply(replies.err(e.reason))
                continue
            if command is None:
                continue
            if isinstance(command, (PutHeader, ScheduleHeader)):  # a payload follows
                self._expect_payload(command)
                continue
            self._dispatch(command)
        self._publish_gathered()
        self.broker.router.heard_from(self.client)

    def _publish_gathered(self) -> None:
        """Append the PUBs gathered so far, before anything else on this connection acts.

        Pipelined publishes are most of a broker's work, and parsing, dispatch and
        the per-topic checks (name, permission, topic limit) were all done for the
        first publish to each topic; ``vetted`` remembers that. A read's PUBs to
        any mix of vetted topics are one batch: one append per topic, one reply slot.
        """
        if self._pubs.order:
            pubs, self._pubs = self._pubs, PubBatch()
            self.broker.publish_batch(self, pubs)

    def _rest_of_pubs(self, pubs: PubBatch, topic: str) -> None:
        """Take the rest of the read at once when it is all PUBs to vetted topics."""
        limit = min(self.broker.config.max_message_bytes, self.framer.max_line_bytes)
        prefix = b"PUB " + topic.encode() + b" "
        span = self.framer.peek_run(prefix, limit)  # the read goes on to the topic it started with
        if span is not None:
            msgs = pub_bodies(span, prefix)
            if msgs is None:
                return
            pubs.add_run(topic, msgs)
        else:
            span = self.framer.peek_run(b"PUB ", limit)
            pairs = pub_lines(span) if span is not None else None
            vetted = self.vetted
            if span is None or pairs is None or not all(t in vetted for t, _ in pairs):
                return
            add = pubs.add
            for topic, msg in pairs:
                add(topic, msg)
        self.framer.advance(len(span))

    def _rest_of_read(
        self, prefix: bytes, split: Callable[[bytes, bytes], list[str] | None]
    ) -> list[str]:
        """The rest of the read, when every line in it starts with ``prefix`` and
        ``split`` (see protocol/runs.py) accepts them all; else nothing is taken."""
        limit = min(self.broker.config.max_message_bytes, self.framer.max_line_bytes)
        span = self.framer.peek_run(prefix, limit)
        items = split(span, prefix) if span is not None else None
        if span is None or items is None:
            return []
        self.framer.advance(len(span))
        return items

    @property
    def trusted(self) -> bool:
        """Authenticated, or authentication is off."""
        return self.user is not None or self.broker.users is None

    def vet(self, topic: str) -> None:
        """Every check a ``PUB`` to ``topic`` needs has passed on this connection."""
        if len(self.vetted) >= VETTED_TOPICS:
            self.vetted.clear()
        self.vetted.add(topic)

    def _dispatch(self, command: Command) -> None:
        # Pushes a command causes (the next delivery after an ACK) follow its reply.
        self._deferring = True
        self.broker.handlers.dispatch(self, command)
        self._deferring = False
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            for data in deferred:
                self.send(data)

    def _expect_payload(self, header: PutHeader | ScheduleHeader) -> None:
        limit = self.broker.config.max_message_bytes
        if header.nbytes > limit:
            self.reply(replies.err(f"message too large (limit {limit} bytes)"))
            self.framer.skip(header.nbytes)
            return
        self._put = header

    def eof_received(self) -> bool:
        # Keep the socket open until every queued reply is out: `printf ... | nc` closes
        # its side right after sending, before its publishes are written.
        self._eof = True
        self.close_reason = self.close_reason or "closed by client"
        self._closing = True
        self.broker.mark_output(self)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        self.broker.unauthenticated.discard(self)
        log.debug(
            "disconnected",
            peer=self.peer,
            user=self.user.name if self.user is not None else None,
            reason=self.close_reason or (f"error: {exc}" if exc else "closed by client"),
            seconds=round(time.monotonic() - self.opened, 3),
            groups=list(self.client.members),
        )
        self.broker.disconnected(self)
        self.client.sender = GONE  # no cycle left: freed now, not at a full GC pass
        self._wake_writers()

    def pause_writing(self) -> None:
        # The client is not reading its replies: stop reading its commands.
        self._writing_paused = True
        self._paused_at = asyncio.get_running_loop().time()
        if self.transport is not None and not self._closing:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_writers()
        if self.transport is not None and not self._closing:
            self.transport.resume_reading()

    def _wake_writers(self) -> None:
        waiters, self._writable_waiters = self._writable_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def writable(self) -> None:
        """For senders that can wait (a catch-up reader): wait while the client is behind,
        or while what it pushed waits behind a reply (a streamed HISTORY)."""
        await asyncio.sleep(0)  # let the tick flush what was queued
        await self._wait_until(lambda: self._held_bytes < HELD_FOR_CATCH_UP)

    async def ready(self, slot: Slot) -> bool:
        """Wait until ``slot`` is the first reply still waiting and the client has read
        what was written before: then a part of its reply may go out (``write_part``).

        A streamed reply (HISTORY, DLQ) thus holds one batch at a time, however large
        the whole and however slowly the client reads. False: the connection is gone.
        """
        return await self._wait_until(lambda: bool(self._held) and self._held[0] is slot)

    async def _wait_until(self, ready: Callable[[], bool]) -> bool:
        """Wait for ``ready()`` with the transport below its high-water mark.

        A client that reads nothing for --write-timeout while a sender waits is
        dropped as a slow consumer, as one whose pushes pass --max-pending-bytes is.
        """
        timeout = self.broker.config.write_timeout
        loop = asyncio.get_running_loop()
        while True:
            transport = self.transport
            if transport is None or transport.is_closing():
                return False
            if not self._writing_paused and ready():
                return True
            waiter = loop.create_future()
            self._writable_waiters.append(waiter)
            if not self._writing_paused:
                await waiter
                continue
            left = self._paused_at + timeout - loop.time()
            try:
                async with asyncio.timeout(max(left, 0.0)):
                    await waiter
            except TimeoutError:
                self.kill(f"slow consumer: read nothing for {timeout:g} s")
                return False

    def write_part(self, data: bytes) -> bool:
        """Write a part of the reply ``ready`` let through, now. Pending output past
        --max-pending-bytes drops the client, as for pushes. False: it is gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        self._out.append(data)
        self.flush()
        pending = self._held_bytes + self.pending_bytes()
        if pending > self.broker.config.max_pending_bytes:
            self.kill(f"slow consumer: {pending} bytes of output pending")
            return False
        return True

    # -- output ------------------------------------------------------------------

    def reply(self, data: bytes) -> None:
        """Queue a reply behind any that are still waiting."""
        if self._held:
            self._held.append(data)
            self._held_bytes += len(data)
        else:
            self._queue(data)

    def reply_later(self, target: object = None, reply: bytes = b"", count: int = 1) -> Slot:
        slot = Slot(self, target, reply)
        slot.count = count
        self._held.append(slot)
        self.broker.holding.add(self)
        return slot

    def hold(self, slot: Slot) -> None:
        """Queue ``slot`` as the next reply; ``reply_later``'s for a slot of another kind."""
        self._held.append(slot)
        self.broker.holding.add(self)

    def last_held(self) -> bytes | Slot | None:
        """The reply queued last behind one still waiting (None: nothing waits)."""
        return self._held[-1] if self._held else None

    @property
    def holds_replies(self) -> bool:
        """A reply is still waiting: anything new must queue behind it."""
        return bool(self._held)

    def join_waiting(self, target: object, reply: bytes, count: int = 1) -> bool:
        """Count ``count`` more ``reply`` into the last slot if it waits for the same write."""
        if self._held:
            last = self._held[-1]
            if (
                isinstance(last, Slot)
                and last.target is target
                and last.data is None
                and last.reply == reply
            ):
                last.count += count
                return True
        return False

    def send(self, data: bytes) -> None:
        """A push (MSG line); a subscriber too far behind is dropped, not buffered forever."""
        if self._closing:
            return
        if self._deferring:
            self._deferred.append(data)
            return
        if self._held:
            self._held.append(data)
            self._held_bytes += len(data)
        else:
            self._queue(data)
        pending = self._out_bytes + self._held_bytes + self.pending_bytes()
        if pending > self.broker.config.max_pending_bytes:
            self.kill(f"slow consumer: {pending} bytes of output pending")

    def _queue(self, data: bytes) -> None:
        if not self._out and not self._reading:  # else the read flushes it (``_process``)
            self.broker.mark_output(self)
        self._out.append(data)
        self._out_bytes += len(data)

    def release(self, durable_gen: int) -> None:
        """Move held replies whose wait is over to the output, in order."""
        held = self._held
        moved = False
        while held:
            item = held[0]
            if isinstance(item, Slot):
                if item.data is None or item.gen > durable_gen:
                    break
                data = item.data
            else:
                data = item
                self._held_bytes -= len(data)
            held.popleft()
            self._queue(data)
            moved = True
        if not held:
            self.broker.holding.discard(self)
        if moved and self._writable_waiters:  # a streamed reply may be first now
            self._wake_writers()

    def reply_now(self, data: bytes) -> None:
        """Send ``data`` at once, behind anything queued: a reply with nothing to wait for.

        Only while no reply is held (``holds_replies``), or it would jump the queue.
        """
        assert not self._held
        transport = self.transport
        if self._out or self._closing or transport is None or transport.is_closing():
            self._out.append(data)
            self.flush()
        else:
            transport.write(data)

    def published(self) -> None:
        """``OK published`` at once: a lone publish's record is with the OS."""
        self.reply_now(replies.PUBLISHED)

    def flush(self) -> None:
        transport = self.transport
        if self._out and transport is not None and not transport.is_closing():
            transport.write(b"".join(self._out) if len(self._out) > 1 else self._out[0])
        self._out.clear()
        self._out_bytes = 0
        if self._closing and not self._held and transport is not None:
            transport.close()

    def pending_bytes(self) -> int:
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    # -- authentication ---------------------------------------------------------------

    def authenticated(self, user: User) -> None:
        self.user = user
        self.vetted.clear()  # permissions may differ for the new user
        self.broker.unauthenticated.discard(self)
        self.framer.max_line_bytes = self.broker.config.max_line_bytes
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    def _auth_expired(self) -> None:
        if self.user is None and not self._closing:
            log.warning("auth_timeout", peer=self.peer)
            self.reply(replies.err("auth timeout"))
            self.quit("auth timeout")
            self.broker.mark_output(self)

    # -- closing -------------------------------------------------------------------

    def quit(self, reason: str = "quit") -> None:
        """Stop reading; close once every queued reply is out."""
        self.close_reason = self.close_reason or reason
        self._closing = True

    def shut_down(self, data: bytes, reason: str) -> None:
        """The broker is stopping: replies that are ready go out, then ``data`` in place
        of any still waiting (they would never come), then the connection closes."""
        self.close_reason = self.close_reason or reason
        self.release(self.broker.engine.durable_gen)
        if self._held:
            self._held.clear()
            self.broker.holding.discard(self)
        self._closing = True
        self._queue(data)

    def kill(self, reason: str, *, notice: bool = False) -> None:
        """Drop the connection now, with what it was still owed.

        ``notice`` (a member declared dead: its socket is fine) tells a connection that
        asked for notices ``CLOSING <reason>`` first, if nothing is still queued in the
        transport ahead of it. A slow consumer is cut silently: its buffer is full.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        log.warning("connection_dropped", peer=self.peer, reason=reason)
        self.close_reason = self.close_reason or reason
        self._closing = True
        self._held.clear()
        self._held_bytes = 0
        self._out.clear()
        if notice and self.notices and not transport.get_write_buffer_size():
            transport.write(closing(reason))
            transport.close()
            return
        transport.abort()
