"""Handlers of the verbs that look into a topic or remove what it holds: ``STATUS``,
``DELETE <topic>`` and progress reports on ``TOUCH``.

Kept apart from handlers.py, which registers them; they use its permission
check and its in-order reply slots (``HandlerTools``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from linemq.broker.delivery.lookup import (
    dead_letters_of,
    find_record,
    is_deleted,
    message_fields,
    place_in,
)
from linemq.broker.delivery.progress import Progress
from linemq.broker.delivery.router import DeliveryError
from linemq.broker.protocol import DeleteTopic, Status, Touch, replies
from linemq.broker.server.auth import Permission
from linemq.broker.server.connection import Connection
from linemq.broker.server.topic_deletion import delete_topic

if TYPE_CHECKING:
    from linemq.broker.server.app import Broker

log = structlog.get_logger(__name__)


class HandlerTools(Protocol):
    """What these handlers borrow from ``Handlers``."""

    broker: Broker

    def _may(self, conn: Connection, topic: str, permission: Permission) -> bool: ...

    def _later(
        self,
        conn: Connection,
        work: Callable[[], Awaitable[bytes]],
        *,
        durable: bool = False,
        block: bool = False,
    ) -> None: ...


class TopicVerbs:
    def __init__(self, tools: HandlerTools) -> None:
        self.tools = tools
        self.broker = tools.broker

    def table(self) -> dict[type[Any], Callable[[Connection, Any], None]]:
        return {Status: self.cmd_STATUS, Touch: self.cmd_TOUCH, DeleteTopic: self.cmd_DELETE}

    def cmd_DELETE(self, conn: Connection, cmd: DeleteTopic) -> None:
        """``DELETE <topic> [force=true]`` (a group's ``DELETE`` is ``Handlers.cmd_DELETE``)."""
        if not self.tools._may(conn, cmd.topic, "manage"):
            return

        async def delete() -> bytes:
            try:
                await delete_topic(self.broker, cmd.topic, cmd.force)
            except DeliveryError as e:
                return replies.err(e.reason)
            user = conn.user.name if conn.user is not None else None
            log.warning("topic_deleted", topic=cmd.topic, force=cmd.force, user=user)
            return replies.topic_deleted(cmd.topic)

        self.tools._later(conn, delete, block=True)

    def cmd_TOUCH(self, conn: Connection, cmd: Touch) -> None:
        """``OK touched`` as before; ``progress=`` is also recorded for ``STATUS``."""
        router = self.broker.router
        try:
            p = router.touch(conn.client, cmd.id)
        except DeliveryError as e:
            conn.reply(replies.err(e.reason))
            return
        if cmd.reports:
            progress = Progress(p.attempts, cmd.progress, cmd.note, time.time())
            router.progress.report(p.member.group, p.offset, progress)
        conn.reply(replies.TOUCHED)

    def cmd_STATUS(self, conn: Connection, cmd: Status) -> None:
        if not self.tools._may(conn, cmd.topic, "subscribe"):
            return
        self.tools._later(conn, lambda: self._status(cmd))

    async def _status(self, cmd: Status) -> bytes:
        topic, router = cmd.topic, self.broker.router
        log_ = self.broker.store.get(topic)
        if log_ is None:
            return replies.err(f"no topic {topic}")
        record = log_.read_cached(cmd.offset, 1) if cmd.offset is not None else None
        if not record or record[0].offset != cmd.offset:
            found = await asyncio.to_thread(find_record, log_, cmd.offset, cmd.id)
            record = [found] if found is not None else []
        if not record:
            what = cmd.id if cmd.id is not None else str(cmd.offset)
            gone = await asyncio.to_thread(is_deleted, log_, cmd.offset, cmd.id)
            return replies.err(f"message {what} not found in {topic}" + (" (deleted)" * gone))
        message = record[0]
        now = time.time()
        groups = sorted(router.groups.get(topic, {}).items())
        places = [place_in(group, message.offset, router.progress, now) for _, group in groups]
        dlq = self.broker.store.get(topic + ".dlq")
        if dlq is not None and any(p.state == "done" for p in places):
            letters = await asyncio.to_thread(dead_letters_of, dlq, message, topic)
            for place in places:
                if place.state == "done" and place.group in letters:
                    place.state, place.fields = "dead", letters[place.group]
        fields = message_fields(message, now)
        lines = [replies.message_status(topic, message.offset, message.id, fields)]
        lines += [
            replies.group_status(topic, message.offset, p.group, p.state, p.fields) for p in places
        ]
        lines.append(replies.STATUS_END)
        return b"".join(lines)
