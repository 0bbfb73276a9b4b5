"""The asyncio linemq client: one connection, pipelined requests, pushed deliveries.

``Client`` is the commands and the connect/close lifecycle; the reply FIFO, the
reader task that routes deliveries and replies, reconnects and heartbeats are
underneath in ``clients/pipeline.py``.

Protocol v2 (``protocol=2``, the default) is asked for with ``HELLO 2 notices``
right after connecting (then ``HELLO 2``); a server that answers ``ERR`` to both
(one from before v2) is spoken to in v1, so the default works against old brokers
too. ``protocol=1`` never sends ``HELLO``: the bytes on the wire are exactly the
v1 client's. Only deliveries differ between the two (v2 frames carry exact
payloads, headers, key, priority and attempt); ``put`` and ``seek`` work on either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_
import warnings
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Final, Self, Unpack

from linemq.clients.backoff import Retry
from linemq.clients.errors import (
    BrokerError,
    ConnectionLost,
    InvalidRequest,
    OutcomeUnknown,
    ProtocolError,
    Timeout,
)
from linemq.clients.lookups import MessageStatus, encode_status, to_message_status
from linemq.clients.operator_verbs import (
    encode_clean,
    encode_delete_group,
    encode_delete_topic,
    encode_pause,
    encode_purge_dlq,
    encode_resume,
    parse_cleaned,
    parse_purged,
    parse_topic_deleted,
)
from linemq.clients.options import Duration, HeaderFilterSpec, Position, to_seconds
from linemq.clients.pipeline import DEFAULT_HEARTBEAT_INTERVAL, READ_LIMIT, Link, Pipeline
from linemq.clients.policies import (
    GroupPolicy,
    SettingValue,
    TopicPolicy,
    encode_policy,
    encode_set_policy,
    to_group_policy,
    to_topic_policy,
)
from linemq.clients.protocol import (
    PING,
    QUIT,
    Closing,
    DeadLetter,
    DlqLine,
    Err,
    Frame,
    GroupLine,
    HistoryLine,
    Ok,
    PublishResult,
    StatLine,
    check_name,
    encode_auth,
    encode_dlq,
    encode_groups,
    encode_hello,
    encode_history,
    encode_pub,
    encode_put,
    encode_replay,
    encode_seek,
    encode_stats,
    encode_sub,
    parse_put_reply,
    parse_replayed,
    parse_seek,
    parse_server_line,
)
from linemq.clients.replies import PolicyLine, StatusLine
from linemq.clients.schedule_lines import ScheduleInfo
from linemq.clients.schedules import (
    ScheduleOptions,
    encode_schedule,
    encode_schedules,
    encode_unschedule,
    parse_scheduled,
    parse_unscheduled,
)
from linemq.clients.servers import Address, parse_servers
from linemq.clients.subscription import Message, Subscribing, Subscription, to_message
from linemq.clients.worker import Handler, Worker, WorkerOptions

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8888
DEFAULT_TIMEOUT: Final = 10.0
DEFAULT_REQUEST_TIMEOUT: Final = 30.0

GroupInfo = GroupLine

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "READ_LIMIT",
    "BrokerError",
    "Client",
    "GroupInfo",
    "Message",
    "PublishResult",
    "Subscription",
    "Worker",
]

_DEFAULT_RETRY: Final = Retry()


class Client(Pipeline):
    """``async with Client(host, port) as c:`` - a connection to a broker that rides out restarts.

    ``Client(servers="host1:8888,host2:8888")`` (or a list) names several nodes of one
    cluster: the client connects to one of them, starting at a random one, and when
    that connection drops it moves on to the next.

    If the connection drops, requests in flight fail with ``ConnectionLost``, and the
    client reconnects in the background (``reconnect=Retry(...)``; ``None`` to stay
    down): each node once per round, exponential backoff with jitter between rounds. It
    joins its groups again (the broker redelivers what the old connection held
    unacked) and resumes exact-topic fanout subscriptions after the last offset seen.
    New requests made meanwhile wait for the new connection, up to ``request_timeout``.
    A publish cut off before its ``OK`` is sent again on the new connection if it
    carries a publisher id (``put(..., id=...)``: the broker stores it once); one
    without raises ``OutcomeUnknown`` (a ``ConnectionLost``): it may or may not be stored.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        servers: str | Iterable[str | Address] | None = None,
        heartbeat_interval: Duration | None = None,
        timeout: Duration = DEFAULT_TIMEOUT,
        request_timeout: Duration | None = DEFAULT_REQUEST_TIMEOUT,
        reconnect: Retry | None = _DEFAULT_RETRY,
        token: str | None = None,
        ssl: ssl_.SSLContext | None = None,
        protocol: int = 2,
    ) -> None:
        """``timeout`` bounds connecting and its handshake; ``request_timeout`` every request.

        Durations, here as everywhere, are seconds, ``timedelta`` or text (``"5s"``).

        ``heartbeat_interval`` None: a third of the broker's ``--heartbeat-timeout``
        when the broker says it (``HELLO … notices``), else 10 s. ``token`` is sent
        as ``AUTH`` right after connecting; ``ssl`` turns on TLS. ``protocol`` is the
        highest version to ask for; ``self.protocol`` is the one in use once
        connected (1 if the server does not know ``HELLO``).

        ``servers`` (``"host1:8888,[::1]:8889"`` or a list of such addresses; a missing
        port is 8888) replaces ``host`` and ``port``: give one or the other.
        """
        encode_hello(protocol)  # 1 or 2
        if servers is not None and (host is not None or port is not None):
            raise ValueError("give host and port, or servers, not both")
        addresses = (
            (Address(host or DEFAULT_HOST, DEFAULT_PORT if port is None else port),)
            if servers is None
            else parse_servers(servers)
        )
        super().__init__(
            addresses,
            None if heartbeat_interval is None else to_seconds(heartbeat_interval),
            None if request_timeout is None else to_seconds(request_timeout),
            reconnect,
        )
        self.max_protocol = protocol
        self.timeout = to_seconds(timeout)
        self.token = token
        self.ssl = ssl

    @property
    def host(self) -> str:
        """The host connected to; when not connected, the one tried next."""
        return (self.server or self.servers[self._next]).host

    @property
    def port(self) -> int:
        """The port connected to; when not connected, the one tried next."""
        return (self.server or self.servers[self._next]).port

    # --- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        """Connect (one attempt at each server) and read the ``OK connected`` banner.

        Harmless when already connected; while the client is reconnecting on its
        own, waits for that instead.
        """
        if self._link is not None:
            return
        task = self._reconnect_task
        if task is not None and not task.done() and not self._closing:
            await asyncio.shield(task)
            if self._link is None:
                raise ConnectionLost(self._lost or "client is not connected")
            return
        self._closing = False
        await self._open_any()

    async def _open(self, address: Address) -> Link:
        where = str(address)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(address.host, address.port, limit=READ_LIMIT, ssl=self.ssl),
                self.timeout,
            )
        except TimeoutError:
            raise Timeout(f"no connection to {where} within {self.timeout:g} s") from None
        try:
            banner = parse_server_line(
                await asyncio.wait_for(reader.readuntil(b"\n"), self.timeout)
            )
        except (asyncio.IncompleteReadError, ProtocolError, TimeoutError, OSError) as exc:
            writer.close()
            raise ConnectionLost(f"no linemq banner from {where}: {exc}") from exc
        if not isinstance(banner, Ok):
            writer.close()
            said = banner.reason if isinstance(banner, Err | Closing) else repr(banner)
            raise ConnectionLost(f"server {where} refused the connection: {said}")
        link = self._start_reader(reader, writer)
        try:
            if self.token is not None:
                await self._request_on(link, encode_auth(self.token), self.timeout)
            if self.max_protocol == 2:
                await self._hello(link)
            await self._adopt(link)
        except BaseException:
            await self._drop(link)
            raise
        return link

    async def _hello(self, link: Link) -> None:
        try:
            text, _ = await self._request_on(link, b"HELLO 2 notices\n", self.timeout)
        except InvalidRequest:  # a broker from before notices, or from before v2
            try:
                await self._request_on(link, encode_hello(2), self.timeout)
            except InvalidRequest:
                self.protocol = 1
                return
            self.protocol = 2
            return
        self.protocol = 2
        self.server_settings = _settings(text)

    async def close(self, *, wait: bool = True) -> None:
        """Say ``QUIT`` and wait for ``OK bye``; fine if the server is already gone.

        Stops reconnecting, and ends every subscription (``StopAsyncIteration``).
        ``wait=False`` (leaving on Ctrl-C or a cancel) sends ``QUIT`` without waiting
        for its reply: a request cut off mid-way may still be answered first.
        """
        self._closing = True
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._stop_heartbeat()
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(ConnectionLost):
                (bye,) = self._send(link, QUIT, 1)
                if wait:
                    with contextlib.suppress(ConnectionError, BrokerError, TimeoutError):
                        await asyncio.wait_for(bye.future, self.timeout)
                else:  # its outcome is nobody's business: never "exception not retrieved"
                    bye.future.add_done_callback(lambda f: f.cancelled() or f.exception())
            writer = link.writer
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            await self._drop(link)
        self._end_subscriptions(None)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cut_off = exc_type is not None and issubclass(
            exc_type, asyncio.CancelledError | KeyboardInterrupt
        )
        await self.close(wait=not cut_off)

    # --- commands ----------------------------------------------------------

    async def ping(self) -> None:
        """Round trip to the broker (``OK pong``)."""
        await self._request(PING)

    async def publish(self, topic: str, text: str) -> PublishResult | None:
        """Publish one line of text; durable once this returns. Returns what ``put`` returns.

        Over protocol 2 it is sent as ``PUT`` so the broker says the offset and id;
        over protocol 1 it is a plain ``PUB`` whose ``OK published`` says neither,
        and this returns None. If the connection drops before the ``OK``, this raises
        ``OutcomeUnknown`` and the message may or may not be stored: use
        ``put(..., id=...)`` to have it retried safely.
        """
        line = encode_pub(topic, text)  # checks it is one non-empty line
        if self.protocol != 2:
            await self._publish(line, idempotent=False)
            return None
        return await self.put(topic, text)

    async def publish_many(self, topic: str, texts: Iterable[str]) -> int:
        """Pipeline many PUBs in one write; raise the first error after all replies are in.

        Every line is encoded before any is sent, so an invalid message sends nothing.
        If the connection drops first, ``OutcomeUnknown`` says how many got no reply
        (those may or may not be stored); they are not sent again.
        """
        lines = [encode_pub(topic, text) for text in texts]
        if not lines:
            return 0
        link = await self._ready()
        waiters = self._send(link, b"".join(lines), len(lines))
        await self._drain(link)
        results = await asyncio.gather(
            *(self._wait(w, self.request_timeout) for w in waiters), return_exceptions=True
        )
        lost = [r for r in results if isinstance(r, ConnectionLost)]
        if lost:
            raise OutcomeUnknown(
                f"{len(lost)} of {len(lines)} publishes have an unknown outcome, each may or "
                f"may not be stored ({lost[0]}); they were not sent again"
            ) from lost[0]
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return len(lines)

    async def put(
        self,
        topic: str,
        payload: bytes | str,
        *,
        key: str | None = None,
        priority: str | int | None = None,
        delay: Duration | None = None,
        at: float | datetime | None = None,
        ttl: Duration | None = None,
        id: str | None = None,
        headers: Mapping[str, str] | None = None,
        max_retries: int | None = None,
    ) -> PublishResult:
        """Publish any bytes with v2 options (see ``encode_put``); durable once this returns.

        With ``id``, a repeat within the broker's dedup window is stored once and
        comes back with ``duplicate=True`` and the first publish's offset and id; so a
        publish with ``id`` whose connection drops before the ``OK`` is sent again on the
        next connection (``OutcomeUnknown`` only if none comes in time, or three in a row
        are lost under it). Without ``id``
        that raises ``OutcomeUnknown`` at once: it may or may not be stored.
        """
        data = encode_put(
            topic,
            payload,
            key=key,
            priority=priority,
            delay=delay,
            at=at,
            ttl=ttl,
            id=id,
            headers=headers,
            max_retries=max_retries,
        )
        text, _ = await self._publish(data, idempotent=id is not None)
        return parse_put_reply(text)

    async def seek(self, topic: str, group: str, position: Position) -> int:
        """Move ``group``'s next delivery to ``position``; return the offset it resolved to."""
        text, _ = await self._request(encode_seek(topic, group, position))
        return parse_seek(text)

    async def history(self, topic: str, n: int) -> list[Message]:
        """The last ``n`` messages of ``topic``, oldest first."""
        _, block = await self._request(encode_history(topic, n))
        return [to_message(line) for line in block if isinstance(line, HistoryLine | Frame)]

    async def groups(self, topic: str) -> list[GroupInfo]:
        """The topic's consumer groups with their counters."""
        _, block = await self._request(encode_groups(topic))
        return [line for line in block if isinstance(line, GroupLine)]

    async def dlq(self, topic: str, n: int | None = None) -> list[DeadLetter]:
        """Last ``n`` dead letters of ``topic`` (server default 100), oldest first."""
        _, block = await self._request(encode_dlq(topic, n))
        return [line.letter for line in block if isinstance(line, DlqLine)]

    async def replay(self, topic: str, id: str | None = None, *, all: bool = False) -> int:
        """Republish one dead letter (its original or DLQ ``id``), or ``all=True`` not yet
        replayed ones; return how many. ``NotFound`` for an unknown id."""
        if id == "ALL" and not all:
            warnings.warn(
                'replay(topic, "ALL") is deprecated: use replay(topic, all=True)',
                DeprecationWarning,
                stacklevel=2,
            )
            id, all = None, True
        if (id is None) == (not all):
            raise ValueError("give a dead letter id or all=True, not both")
        text, _ = await self._request(encode_replay(check_name(topic), id or "ALL"))
        return parse_replayed(text)

    async def stats(self, topic: str | None = None) -> list[StatLine]:
        """The ``STAT`` lines of ``STATS [topic]``: the broker, then topics, then groups."""
        _, block = await self._request(encode_stats(topic))
        return [line for line in block if isinstance(line, StatLine)]

    async def pause(self, topic: str, group: str) -> None:
        """Stop deliveries to ``group`` (durably); it keeps collecting messages."""
        await self._request(encode_pause(topic, group))

    async def resume(self, topic: str, group: str) -> None:
        await self._request(encode_resume(topic, group))

    async def delete_group(self, topic: str, group: str, *, force: bool = False) -> None:
        """Delete a consumer group for good (``topic`` may be a wildcard). The broker refuses
        a group with members (``BrokerError: group has members``) unless ``force``."""
        await self._request(encode_delete_group(topic, group, force=force))

    async def status(self, topic: str, message: str | int) -> MessageStatus:
        """Where a message (its id, or an int offset) is in each group of ``topic``:
        ``NotFound`` if the topic or the message is not there."""
        _, block = await self._request(encode_status(topic, message))
        return to_message_status([line for line in block if isinstance(line, StatusLine)])

    async def policy(self, topic: str) -> TopicPolicy:
        """The delivery policy ``topic``'s groups use: its ``--topic-policy`` or the
        broker-wide flags (``source == "default"``)."""
        _, block = await self._request(encode_policy(topic))
        return to_topic_policy([line for line in block if isinstance(line, PolicyLine)])

    async def group_policy(self, topic: str, group: str) -> GroupPolicy:
        """The policy ``group`` uses: its own settings over its topic's (``overrides``
        names its own). ``BrokerError: no group ...`` if there is none."""
        _, block = await self._request(encode_policy(topic, group))
        return to_group_policy([line for line in block if isinstance(line, PolicyLine)])

    async def set_group_policy(
        self, topic: str, group: str, **settings: SettingValue
    ) -> GroupPolicy:
        """Set settings of one group, durably and at once (manage permission), e.g.
        ``rate="100/1s", max_retries=10, backoff="fixed:5s", nack_backoff=False``; None
        clears one (its topic's applies again). All or nothing: a bad value raises
        ``BrokerError`` and changes nothing. Returns the group's policy after it."""
        await self._request(encode_set_policy(topic, group, settings))
        return await self.group_policy(topic, group)

    async def delete_topic(self, topic: str, *, force: bool = False) -> None:
        """Delete a topic, its dead letters and every group of both, for good (``DELETE``).
        The broker refuses while clients subscribe to it (``BrokerError: topic has
        subscribers``) unless ``force``; ``NotFound`` for an unknown topic."""
        text, _ = await self._request(encode_delete_topic(topic, force=force))
        parse_topic_deleted(text, topic)

    async def purge_dlq(self, topic: str, letter: str | None = None) -> int:
        """Delete every dead letter of ``topic`` (``PURGE <topic>.dlq``), or only ``letter``
        (its dlq offset, dlq id, or the message's id); return how many."""
        text, _ = await self._request(encode_purge_dlq(topic, letter))
        return parse_purged(text)

    async def clean(
        self, topic: str, *, older: Duration | None = None, keep: int | None = None
    ) -> int:
        """Delete ``topic``'s oldest whole segments that every group has finished and that are
        ``older`` than that and/or beyond the newest ``keep`` messages (``CLEAN``); return how
        many messages went."""
        seconds = None if older is None else to_seconds(older)
        text, _ = await self._request(encode_clean(topic, seconds, keep))
        return parse_cleaned(text)

    async def schedule(
        self,
        topic: str,
        name: str,
        payload: bytes | str,
        *,
        every: Duration | None = None,
        cron: str | None = None,
        tz: str | None = None,
        **put_options: Unpack[ScheduleOptions],
    ) -> float:
        """Make (or replace) the repeatable job ``name`` on ``topic``: the broker publishes
        ``payload`` with the ``put`` options given (key, priority, delay, ttl, headers,
        max_retries) every ``every`` or at each ``cron`` time (UTC, or the zone ``tz``).
        Returns the first due time (epoch seconds) once the job is stored."""
        data = encode_schedule(topic, name, payload, every=every, cron=cron, tz=tz, **put_options)
        text, _ = await self._request(data)
        return parse_scheduled(text, topic, name)

    async def schedules(self, topic: str | None = None) -> list[ScheduleInfo]:
        """The repeatable jobs (of ``topic``), sorted by topic and name."""
        _, block = await self._request(encode_schedules(topic))
        return [line for line in block if isinstance(line, ScheduleInfo)]

    async def unschedule(self, topic: str, name: str) -> None:
        """Remove a repeatable job; ``NotFound`` if there is none of that name."""
        text, _ = await self._request(encode_unschedule(topic, name))
        parse_unscheduled(text, topic, name)

    def subscribe(
        self,
        topic: str,
        group: str | None = None,
        start: Position | None = None,
        ordering: str | None = None,
        filter: HeaderFilterSpec | None = None,
    ) -> Subscribing:
        """``sub = await client.subscribe(...)``: subscribed once the ``await`` returns.

        Messages published after that are delivered, so subscribe before you
        publish (or give ``start``). ``topic`` may be a pattern (``orders.*``,
        ``orders.>``); deliveries carry the concrete topic. ``group`` joins a
        consumer group (ack each message). ``start`` (``"earliest"``, an offset,
        an epoch time, a ``timedelta`` ago...) replays history first for fanout,
        or places a group that this SUB creates. With several subscriptions on one
        connection, a delivery for topic T goes to the subscription named T, else
        to the first one (in subscription order) whose pattern matches T: the wire
        does not say which SUB a delivery is for, so keep overlapping fanout and
        group subscriptions on separate connections. ``ordering="fifo"`` makes a group
        this SUB creates strictly FIFO (one message out at a time; a retried one holds
        back the rest); a SUB with another ordering than the group's is refused.
        ``filter`` (``"h.type=email|sms"``, a list of such tests, or
        ``{"type": ["email", "sms"]}``) makes a group this SUB creates get only the
        messages whose headers match; the broker refuses one that differs from the
        group's. Both are sent again on every re-SUB after a reconnect.
        """
        encode_sub(topic, group, start, ordering, filter)  # validate before sending
        return Subscribing(Subscription(self, topic, group, start, ordering, filter))

    async def subscribe_to(
        self,
        topic: str,
        group: str | None = None,
        start: Position | None = None,
        ordering: str | None = None,
        filter: HeaderFilterSpec | None = None,
    ) -> Subscription:
        """The same as ``await subscribe(...)`` (kept for older code)."""
        return await self.subscribe(topic, group, start, ordering, filter)

    def worker(
        self, topic: str, group: str, handler: Handler, **options: Unpack[WorkerOptions]
    ) -> Worker:
        """A ``Worker`` running ``await handler(message)`` for each delivery of ``group``:
        ``async with client.worker(...) as w:``, or ``await w.run()``. See ``process``."""
        return Worker(self, topic, group, handler, **options)

    async def process(
        self, topic: str, group: str, handler: Handler, **options: Unpack[WorkerOptions]
    ) -> None:
        """Work through ``group``'s messages until cancelled; a cancel drains first.

        ``handler`` returns: ACK. Raises ``Terminate(reason)``: TERM (dead-lettered now).
        Raises ``RetryLater(delay, reason)``: NACK with that delay. Raises anything else:
        NACK with the exception's text as the reason, after ``retry_backoff``'s delay for
        the delivery's attempt if given (else the broker's retry policy). Options:
        ``concurrency`` (1) handlers at once (one connection holds at most the broker's
        ``--max-inflight``); ``timeout`` cancels a handler that runs longer and nacks
        its message; held messages are touched every third of the broker's ack timeout
        (``touch_every``) unless ``auto_extend=False``; on cancel, running handlers get
        ``grace`` (30 s) to finish and be settled, the rest are given back (UNSUB)
        without an attempt counted; ``start`` places a group this creates.
        """
        await Worker(self, topic, group, handler, **options).run()


def _settings(hello_text: str) -> dict[str, float]:
    """The ``key=value`` pairs after ``hello <v>``; unknown or malformed ones are skipped."""
    settings: dict[str, float] = {}
    for word in hello_text.split()[2:]:
        key, sep, value = word.partition("=")
        with contextlib.suppress(ValueError):
            if sep:
                settings[key] = float(value)
    return settings
