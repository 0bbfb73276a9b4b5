"""Handlers of the verbs that look into a topic or remove what it holds: ``STATUS``, ``POLICY``,
``DELETE <topic>`` and progress reports on ``TOUCH``.

Kept apart from handlers.py, which registers them; they use its permission
check and its in-order reply slots (``HandlerTools``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from linemq.broker.auth import Permission
from linemq.broker.delivery.dead_letters import DeadLetterNotFound
from linemq.broker.delivery.lookup import NotThere, message_status
from linemq.broker.delivery.policy import describe
from linemq.broker.delivery.progress import Progress
from linemq.broker.delivery.router import DeliveryError
from linemq.broker.engine.upkeep import drop_below
from linemq.broker.protocol import Clean, DeleteTopic, Policy, Purge, Status, Touch, replies
from linemq.broker.protocol.names import source_topic
from linemq.broker.protocol.v2 import escape_value
from linemq.broker.server.connection import Connection
from linemq.broker.server.core import Core

log = structlog.get_logger(__name__)


class HandlerTools(Protocol):
    """What these handlers borrow from ``Handlers``."""

    broker: Core

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
        return {
            Status: self.cmd_STATUS,
            Touch: self.cmd_TOUCH,
            DeleteTopic: self.cmd_DELETE,
            Clean: self.cmd_CLEAN,
            Policy: self.cmd_POLICY,
        }

    def cmd_POLICY(self, conn: Connection, cmd: Policy) -> None:
        """A topic's policy; a group's (subscribe permission); or set a group's (manage),
        ``OK`` once its journal line is written."""
        if not self.tools._may(conn, cmd.topic, "manage" if cmd.changes else "subscribe"):
            return
        if cmd.group is None:
            fields = describe(self.broker.router.policy(cmd.topic))
            conn.reply(replies.policy_line(cmd.topic, fields) + replies.POLICY_END)
            return
        try:
            fields, journal = self.broker.router.group_policy(cmd.topic, cmd.group, cmd.changes)
        except DeliveryError as e:
            conn.reply(replies.err(e.reason))
            return
        if not cmd.changes:
            conn.reply(replies.policy_line(cmd.topic, fields, cmd.group) + replies.POLICY_END)
            return
        user = conn.user.name if conn.user is not None else None
        changes = dict(cmd.changes)
        log.info("group_policy_set", topic=cmd.topic, group=cmd.group, user=user, **changes)
        self.broker.reply_after_write(conn, journal, replies.policy_set(cmd.topic, cmd.group))

    def cmd_CLEAN(self, conn: Connection, cmd: Clean) -> None:
        if not self.tools._may(conn, cmd.topic, "manage"):
            return

        async def clean() -> bytes:
            store = self.broker.store
            view = store.get(cmd.topic)
            if view is None:
                return replies.err(f"no topic {cmd.topic}")
            groups = self.broker.router.groups.get(cmd.topic, {}).values()
            # Below every group's floor: each group acked (or otherwise finished) it.
            limit = min((g.state.floor for g in groups), default=view.last_offset + 1)
            if cmd.keep is not None:
                limit = min(limit, view.last_offset - cmd.keep + 1)
            router, now = self.broker.router, time.time()
            count = await drop_below(store, router, cmd.topic, limit, now, cmd.older)
            user = conn.user.name if conn.user is not None else None
            log.warning(
                "topic_cleaned", topic=cmd.topic, older=cmd.older, keep=cmd.keep,
                records=count, user=user,
            )  # fmt: skip
            return replies.cleaned(count)

        self.tools._later(conn, clean)

    def cmd_DELETE(self, conn: Connection, cmd: DeleteTopic) -> None:
        """``DELETE <topic> [force=true]`` (a group's ``DELETE`` is ``Handlers.cmd_DELETE``)."""
        if not self.tools._may(conn, cmd.topic, "manage"):
            return

        async def delete() -> bytes:
            try:
                await self.broker.delete_topic(cmd.topic, cmd.force)
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
            group, offset, attempt = router.touch(conn.client, cmd.id)
        except DeliveryError as e:
            conn.reply(replies.err(e.reason))
            return
        if cmd.reports:
            progress = Progress(attempt, cmd.progress, cmd.note, time.time())
            router.progress.report(group, offset, progress)
        conn.reply(replies.TOUCHED)

    def cmd_STATUS(self, conn: Connection, cmd: Status) -> None:
        if not self.tools._may(conn, cmd.topic, "subscribe"):
            return
        self.tools._later(conn, lambda: self._status(cmd))

    async def _status(self, cmd: Status) -> bytes:
        broker = self.broker
        try:
            record, fields, places = await message_status(
                broker.store, broker.router, broker.dead_letters, cmd.topic, cmd.offset, cmd.id
            )
        except NotThere as e:
            return replies.err(e.reason)
        topic, offset = cmd.topic, record.offset
        lines = [replies.message_status(topic, offset, record.id, _escaped(fields))]
        lines += [
            replies.group_status(topic, offset, p.group, p.state, _escaped(p.fields))
            for p in places
        ]
        lines.append(replies.STATUS_END)
        return b"".join(lines)


async def remove_letter(broker: Core, conn: Connection, cmd: Purge) -> bytes:
    """``PURGE <topic>.dlq <letter>``: ``OK purged <n>`` once the removal is journaled."""
    assert cmd.letter is not None
    topic = source_topic(cmd.topic)
    try:
        count = await broker.dead_letters.remove(topic, cmd.letter)
    except DeadLetterNotFound as e:
        return replies.err(str(e))
    user = conn.user.name if conn.user is not None else None
    log.warning("dead_letter_removed", topic=topic, letter=cmd.letter, count=count, user=user)
    return replies.purged(count)


def _escaped(fields: dict[str, str]) -> dict[str, str]:
    """Text values (an error, a note, a key) percent-escaped as v2 header values are."""
    return {k: escape_value(v) for k, v in fields.items()}
