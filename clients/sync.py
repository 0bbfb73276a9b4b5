"""A blocking wrapper around the asyncio ``Client`` for scripts.

It runs the async client on an event loop in a daemon thread rather than
re-implementing the protocol on a blocking socket: reply routing, pushed MSG
lines and group heartbeats then behave exactly as in the async client, and the
heartbeats keep flowing while the script is busy between messages.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from linemq.clients.aio import (
    _DEFAULT_RETRY,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TIMEOUT,
    Client,
    GroupInfo,
    Message,
    Subscription,
)
from linemq.clients.backoff import Retry
from linemq.clients.errors import Timeout
from linemq.clients.lookups import MessageStatus
from linemq.clients.options import Duration, HeaderFilterSpec, Position, to_seconds
from linemq.clients.policies import GroupPolicy, SettingValue, TopicPolicy
from linemq.clients.protocol import DeadLetter, PublishResult, StatLine
from linemq.clients.schedule_lines import ScheduleInfo
from linemq.clients.schedules import ScheduleOptions
from linemq.clients.servers import Address
from linemq.clients.worker import Worker, WorkerOptions, WorkerStats

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SyncMessage:
    """A delivery whose ``ack``/``nack``/``touch`` block until the server confirms."""

    topic: str
    id: str
    offset: int
    ts: float
    text: str
    group: str | None = None
    raw: str = field(default="", repr=False, compare=False)
    _message: Message | None = field(default=None, repr=False, compare=False)
    _client: SyncClient | None = field(default=None, repr=False, compare=False)
    payload: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    key: str | None = None
    priority: str | None = None
    attempt: int | None = None

    def ack(self) -> None:
        """Done with it: the group never delivers it again."""
        client, message = self._bound()
        client._call(message.ack())

    def nack(self, delay: Duration | None = None, reason: str | None = None) -> None:
        """Give it back: redelivered now, or after ``delay`` (``"5s"``, ``1.5``, ``timedelta``).
        ``reason`` (an error text) is kept with the attempt and shown in the dead letter."""
        client, message = self._bound()
        client._call(message.nack(delay, reason))

    def term(self, reason: str | None = None) -> None:
        """Fail it for good: dead-lettered now, no retries left, with ``reason`` as its error."""
        client, message = self._bound()
        client._call(message.term(reason))

    def touch(self, progress: float | None = None, note: str | None = None) -> None:
        """Still working on it: restart the ack timer; ``progress`` and ``note`` as
        ``Message.touch``."""
        client, message = self._bound()
        client._call(message.touch(progress, note))

    def _bound(self) -> tuple[SyncClient, Message]:
        if self._message is None or self._client is None:
            raise ValueError("only consumer-group deliveries can be acked, nacked or touched")
        return self._client, self._message


def _sync_message(client: SyncClient, m: Message) -> SyncMessage:
    return SyncMessage(
        m.topic,
        m.id,
        m.offset,
        m.ts,
        m.text,
        m.group,
        m.raw,
        m,
        client if m.group is not None else None,
        payload=m.payload,
        headers=m.headers,
        key=m.key,
        priority=m.priority,
        attempt=m.attempt,
    )


class SyncSubscription:
    """``for m in sub:`` blocks for each message; ``next(timeout)`` to wait a bounded time."""

    def __init__(self, client: SyncClient, sub: Subscription) -> None:
        self._client = client
        self._sub = sub

    def next(self, timeout: Duration | None = None) -> SyncMessage:
        """Raise ``Timeout`` after ``timeout`` s, ``StopIteration`` once unsubscribed.

        Like the async subscription, it waits through a reconnect, and raises
        ``ConnectionLost`` only once the client gave up.
        """
        seconds = None if timeout is None else to_seconds(timeout)
        try:
            m = self._client._call(self._sub.next(), seconds)
        except StopAsyncIteration:
            raise StopIteration from None
        except TimeoutError as exc:
            if isinstance(exc, Timeout) or seconds is None:
                raise
            raise Timeout(f"no message within {seconds:g} s") from None
        return _sync_message(self._client, m)

    def unsubscribe(self) -> None:
        self._client._call(self._sub.unsubscribe())

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> SyncMessage:
        return self.next()


class SyncWorker:
    """``SyncClient.worker(...)``: ``run()`` blocks until stopped; ``stop()`` from any thread.

    The ``Worker`` runs on the client's loop; each handler runs in a pool thread of its own.
    """

    def __init__(self, client: SyncClient, worker: Worker, pool: ThreadPoolExecutor) -> None:
        self._client = client
        self._worker = worker
        self._pool = pool

    @property
    def stats(self) -> WorkerStats:
        return self._worker.stats

    def stop(self) -> None:
        """Start nothing new and drain (as ``Worker.stop``); a second call cuts it short."""
        loop = self._client._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._worker.stop)

    def run(self) -> None:
        """Work until ``stop()``. Ctrl-C drains first (a second one cuts the grace short),
        then raises ``KeyboardInterrupt``; a client that gave up raises ``ConnectionLost``."""
        loop = self._client._loop
        if loop is None:
            raise ConnectionError("client is not connected")
        future = asyncio.run_coroutine_threadsafe(self._worker.run(), loop)
        interrupted = False
        try:
            while True:
                try:
                    future.result()
                    break
                except KeyboardInterrupt:
                    interrupted = True
                    self.stop()
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if interrupted:
            raise KeyboardInterrupt


class SyncClient:
    """``with SyncClient(host, port) as c: c.publish("chat", "hi")``.

    The same client as ``Client`` (same options, ``servers=`` to fail over between
    nodes, same reconnects, same errors), each method blocking until the broker answered.
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
        self._client = Client(
            host,
            port,
            servers=servers,
            heartbeat_interval=heartbeat_interval,
            timeout=timeout,
            request_timeout=request_timeout,
            reconnect=reconnect,
            token=token,
            ssl=ssl,
            protocol=protocol,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def connect(self) -> None:
        """Connect; harmless when connected, and waits for a reconnect in progress."""
        if self._loop is not None:
            self._call(self._client.connect())
            return
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="linemq-sync", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._client.connect())
        except BaseException:
            self._stop_loop()
            raise

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self._call(self._client.close())
        finally:
            self._stop_loop()

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def protocol(self) -> int:
        """The protocol version in use: 2, or 1 with a server from before v2."""
        return self._client.protocol

    @property
    def client(self) -> Client:
        """The async client underneath (its ``reconnects``, ``server_settings``…)."""
        return self._client

    def ping(self) -> None:
        self._call(self._client.ping())

    def put(
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
        """As ``Client.put``: any bytes, with v2 options."""
        return self._call(
            self._client.put(
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
        )

    def seek(self, topic: str, group: str, position: Position) -> int:
        return self._call(self._client.seek(topic, group, position))

    def publish(self, topic: str, text: str) -> PublishResult | None:
        """As ``Client.publish``: the offset and id (None over protocol 1)."""
        return self._call(self._client.publish(topic, text))

    def publish_many(self, topic: str, texts: Iterable[str]) -> int:
        return self._call(self._client.publish_many(topic, list(texts)))

    def history(self, topic: str, n: int) -> list[Message]:
        return self._call(self._client.history(topic, n))

    def groups(self, topic: str) -> list[GroupInfo]:
        return self._call(self._client.groups(topic))

    def dlq(self, topic: str, n: int | None = None) -> list[DeadLetter]:
        return self._call(self._client.dlq(topic, n))

    def replay(self, topic: str, id: str | None = None, *, all: bool = False) -> int:
        """As ``Client.replay``: one dead letter by id, or ``all=True``."""
        if id == "ALL" and not all:
            warnings.warn(
                'replay(topic, "ALL") is deprecated: use replay(topic, all=True)',
                DeprecationWarning,
                stacklevel=2,
            )
            id, all = None, True
        return self._call(self._client.replay(topic, id, all=all))

    def stats(self, topic: str | None = None) -> list[StatLine]:
        return self._call(self._client.stats(topic))

    def pause(self, topic: str, group: str) -> None:
        self._call(self._client.pause(topic, group))

    def resume(self, topic: str, group: str) -> None:
        self._call(self._client.resume(topic, group))

    def delete_group(self, topic: str, group: str, *, force: bool = False) -> None:
        self._call(self._client.delete_group(topic, group, force=force))

    def delete_topic(self, topic: str, *, force: bool = False) -> None:
        self._call(self._client.delete_topic(topic, force=force))

    def purge_dlq(self, topic: str, letter: str | None = None) -> int:
        return self._call(self._client.purge_dlq(topic, letter))

    def clean(self, topic: str, *, older: Duration | None = None, keep: int | None = None) -> int:
        return self._call(self._client.clean(topic, older=older, keep=keep))

    def ack(self, message_id: str) -> None:
        self._call(self._client.ack(message_id))

    def nack(
        self, message_id: str, delay: Duration | None = None, reason: str | None = None
    ) -> None:
        self._call(self._client.nack(message_id, delay, reason))

    def term(self, message_id: str, reason: str | None = None) -> None:
        self._call(self._client.term(message_id, reason))

    def touch(
        self, message_id: str, progress: float | None = None, note: str | None = None
    ) -> None:
        self._call(self._client.touch(message_id, progress, note))

    def status(self, topic: str, message: str | int) -> MessageStatus:
        return self._call(self._client.status(topic, message))

    def policy(self, topic: str) -> TopicPolicy:
        return self._call(self._client.policy(topic))

    def schedule(
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
        """As ``Client.schedule``: make or replace a repeatable job; the first due time."""
        job = self._client.schedule(
            topic, name, payload, every=every, cron=cron, tz=tz, **put_options
        )
        return self._call(job)

    def schedules(self, topic: str | None = None) -> list[ScheduleInfo]:
        return self._call(self._client.schedules(topic))

    def unschedule(self, topic: str, name: str) -> None:
        self._call(self._client.unschedule(topic, name))

    def group_policy(self, topic: str, group: str) -> GroupPolicy:
        return self._call(self._client.group_policy(topic, group))

    def set_group_policy(self, topic: str, group: str, **settings: SettingValue) -> GroupPolicy:
        return self._call(self._client.set_group_policy(topic, group, **settings))

    def subscribe(
        self,
        topic: str,
        group: str | None = None,
        start: Position | None = None,
        ordering: str | None = None,
        filter: HeaderFilterSpec | None = None,
    ) -> SyncSubscription:
        """Subscribe now (returns after ``OK subscribed``); iterate for messages.

        The same as ``await Client.subscribe(...)``: eager, and re-subscribed
        after a reconnect. ``topic`` may be a pattern; ``start``, ``ordering`` and
        ``filter`` as in ``Client.subscribe``.
        """
        sub = self._call(self._client.subscribe_to(topic, group, start, ordering, filter))
        return SyncSubscription(self, sub)

    def worker(
        self,
        topic: str,
        group: str,
        handler: Callable[[SyncMessage], object],
        **options: Unpack[WorkerOptions],
    ) -> SyncWorker:
        """As ``Client.worker``, with a blocking ``handler`` run in a pool of ``concurrency``
        threads. A thread cannot be cancelled: past ``timeout`` (or the grace) the message
        is nacked (or given back) and the handler left to finish, its result ignored."""
        pool = ThreadPoolExecutor(options.get("concurrency", 1), "linemq-worker")

        async def in_pool(m: Message) -> None:
            await asyncio.get_running_loop().run_in_executor(pool, handler, _sync_message(self, m))

        return SyncWorker(self, Worker(self._client, topic, group, in_pool, **options), pool)

    def process(
        self,
        topic: str,
        group: str,
        handler: Callable[[SyncMessage], object],
        **options: Unpack[WorkerOptions],
    ) -> None:
        """``worker(...).run()``: work until Ctrl-C, which drains first (see ``SyncWorker``)."""
        self.worker(topic, group, handler, **options).run()

    def _call(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        if self._loop is None:
            coro.close()
            raise ConnectionError("client is not connected")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise
        except KeyboardInterrupt:
            future.cancel()  # don't leave the coroutine running behind Ctrl-C
            raise

    def _stop_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
