"""The asyncio linemq client: one connection, pipelined requests, pushed deliveries.

``Client`` is the commands and the connect/close lifecycle; the reply FIFO, the
reader task that routes deliveries and replies, and heartbeats are underneath in
``clients/pipeline.py``.

Protocol v2 (``protocol=2``, the default) is asked for with ``HELLO 2`` right
after connecting; a server that answers ``ERR`` (one from before v2) is spoken to
in v1, so the default works against old brokers too. ``protocol=1`` never sends
``HELLO``: the bytes on the wire are exactly the v1 client's. Only deliveries
differ between the two (v2 frames carry exact payloads, headers, key, priority
and attempt); ``put`` and ``seek`` work on either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Final, Self

from clients.operator_verbs import encode_pause, encode_purge_dlq, encode_resume, parse_purged
from clients.options import Duration, Position
from clients.pipeline import READ_LIMIT, BrokerError, Pipeline
from clients.protocol import (
    PING,
    QUIT,
    DeadLetter,
    DlqLine,
    Frame,
    GroupLine,
    HistoryLine,
    Ok,
    ProtocolError,
    PublishResult,
    StatLine,
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
from clients.subscription import Message, Subscription, to_message

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8888
DEFAULT_HEARTBEAT_INTERVAL: Final = 10.0
DEFAULT_TIMEOUT: Final = 10.0

GroupInfo = GroupLine

__all__ = [
    "READ_LIMIT",
    "BrokerError",
    "Client",
    "GroupInfo",
    "Message",
    "PublishResult",
    "Subscription",
]


class Client(Pipeline):
    """``async with Client(host, port) as c:`` - one TCP connection to a broker."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        ssl: ssl_.SSLContext | None = None,
        protocol: int = 2,
    ) -> None:
        """``timeout`` bounds connecting and the ``QUIT`` handshake, not ordinary requests.

        ``token`` is sent as ``AUTH`` right after connecting; ``ssl`` turns on TLS.
        ``protocol`` is the highest version to ask for; ``self.protocol`` is the one
        in use once connected (1 if the server does not know ``HELLO``).
        """
        encode_hello(protocol)  # 1 or 2
        self.max_protocol = protocol
        self.protocol = 1
        self.host = host
        self.port = port
        super().__init__(heartbeat_interval)
        self.timeout = timeout
        self.token = token
        self.ssl = ssl

    # --- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection and read the ``OK connected`` banner."""
        if self._writer is not None:
            raise RuntimeError("client already connected")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=READ_LIMIT, ssl=self.ssl),
            self.timeout,
        )
        try:
            banner = parse_server_line(
                await asyncio.wait_for(reader.readuntil(b"\n"), self.timeout)
            )
        except (asyncio.IncompleteReadError, ProtocolError, TimeoutError) as exc:
            writer.close()
            raise ConnectionError(f"no linemq banner from {self.host}:{self.port}: {exc}") from exc
        if not isinstance(banner, Ok):
            writer.close()
            raise ConnectionError(f"server refused the connection: {banner}")
        self._reader, self._writer = reader, writer
        self._read_task = asyncio.create_task(self._read_loop(), name="linemq-reader")
        try:
            if self.token is not None:
                await self._request(encode_auth(self.token))
            if self.max_protocol == 2:
                await self._hello()
        except BaseException:
            await self.close()
            raise

    async def _hello(self) -> None:
        try:
            await self._request(encode_hello(2))
        except BrokerError:
            return  # a server from before v2: "ERR unknown command: HELLO 2"
        self.protocol = 2

    async def close(self) -> None:
        """Say ``QUIT`` and wait for ``OK bye``; fine if the server is already gone."""
        if self._writer is None or self._closing:
            return
        self._stop_heartbeat()
        if self._lost is None:
            (bye,) = self._send(QUIT, 1)
            self._closing = True
            with contextlib.suppress(ConnectionError, BrokerError, TimeoutError):
                await asyncio.wait_for(bye.future, self.timeout)
        self._closing = True
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_task
        self._shutdown(None)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- commands ----------------------------------------------------------

    async def ping(self) -> None:
        await self._request(PING)

    async def publish(self, topic: str, text: str) -> None:
        """Return once the broker said ``OK published`` (it is durable by then)."""
        await self._request(encode_pub(topic, text))

    async def publish_many(self, topic: str, texts: Iterable[str]) -> int:
        """Pipeline many PUBs in one write; raise the first error after all replies are in.

        Every line is encoded before any is sent, so an invalid message sends nothing.
        """
        lines = [encode_pub(topic, text) for text in texts]
        if not lines:
            return 0
        waiters = self._send(b"".join(lines), len(lines))
        await self._drain()
        results = await asyncio.gather(*(w.future for w in waiters), return_exceptions=True)
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
    ) -> PublishResult:
        """Publish any bytes with v2 options (see ``encode_put``); durable once this returns.

        With ``id``, a repeat within the broker's dedup window is stored once and
        comes back with ``duplicate=True`` and the first publish's offset and id.
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
        )
        text, _ = await self._request(data)
        return parse_put_reply(text)

    async def seek(self, topic: str, group: str, position: Position) -> int:
        """Move ``group``'s next delivery to ``position``; return the offset it resolved to."""
        text, _ = await self._request(encode_seek(topic, group, position))
        return parse_seek(text)

    async def history(self, topic: str, n: int) -> list[Message]:
        _, block = await self._request(encode_history(topic, n))
        return [to_message(line) for line in block if isinstance(line, HistoryLine | Frame)]

    async def groups(self, topic: str) -> list[GroupInfo]:
        _, block = await self._request(encode_groups(topic))
        return [line for line in block if isinstance(line, GroupLine)]

    async def dlq(self, topic: str, n: int | None = None) -> list[DeadLetter]:
        """Last ``n`` dead letters of ``topic`` (server default 100), oldest first."""
        _, block = await self._request(encode_dlq(topic, n))
        return [line.letter for line in block if isinstance(line, DlqLine)]

    async def replay(self, topic: str, target: str) -> int:
        """Republish a dead letter (by id) or ``"ALL"`` unreplayed ones; return how many."""
        text, _ = await self._request(encode_replay(topic, target))
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

    async def purge_dlq(self, topic: str) -> int:
        """Delete every dead letter of ``topic`` (``PURGE <topic>.dlq``); return how many."""
        text, _ = await self._request(encode_purge_dlq(topic))
        return parse_purged(text)

    def subscribe(
        self, topic: str, group: str | None = None, start: Position | None = None
    ) -> Subscription:
        """A subscription that sends ``SUB`` on first iteration (or ``await sub.start()``).

        ``topic`` may be a pattern (``orders.*``, ``orders.>``); deliveries carry
        the concrete topic. ``start`` (``"earliest"``, an offset, an epoch time, a
        ``timedelta`` ago...) replays history first for fanout, or places a group
        that this SUB creates. With several subscriptions on one connection, a
        delivery for topic T goes to the subscription named T, else to the first
        one (in subscription order) whose pattern matches T: the wire does not say
        which SUB a delivery is for, so keep overlapping fanout and group
        subscriptions on separate connections.
        """
        encode_sub(topic, group, start)  # validate now, not on first iteration
        return Subscription(self, topic, group, start)

    async def subscribe_to(
        self, topic: str, group: str | None = None, start: Position | None = None
    ) -> Subscription:
        """Subscribe now: returns once the server confirmed with ``OK subscribed``."""
        return await self.subscribe(topic, group, start).start()
