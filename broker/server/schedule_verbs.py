"""Handlers of ``SCHEDULE``, ``SCHEDULES`` and ``UNSCHEDULE`` (the jobs live in schedules.py).

Permissions: scheduling is publishing later, so ``SCHEDULE`` and ``UNSCHEDULE`` need
publish on the topic (never a ``.dlq`` topic); ``SCHEDULES`` shows the jobs of the
topics the user may publish to or subscribe to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import structlog

from linemq.broker.auth import Permission
from linemq.broker.protocol import replies
from linemq.broker.protocol.schedules import (
    SCHEDULES_END,
    ListSchedules,
    Schedule,
    Unschedule,
    schedule_line,
    scheduled,
    unscheduled,
)
from linemq.broker.server.connection import Connection
from linemq.broker.server.core import Core
from linemq.broker.server.schedules import Refused

log = structlog.get_logger(__name__)


class HandlerTools(Protocol):
    """What these handlers borrow from ``Handlers``."""

    broker: Core

    def _may(self, conn: Connection, topic: str, permission: Permission) -> bool: ...
    def _may_write(self, conn: Connection, topic: str) -> bool: ...
    def _may_create(self, conn: Connection, topic: str) -> bool: ...


class ScheduleVerbs:
    def __init__(self, tools: HandlerTools) -> None:
        self.tools = tools
        self.broker = tools.broker

    def table(self) -> dict[type[Any], Callable[[Connection, Any], None]]:
        return {
            Schedule: self.cmd_SCHEDULE,
            ListSchedules: self.cmd_SCHEDULES,
            Unschedule: self.cmd_UNSCHEDULE,
        }

    def cmd_SCHEDULE(self, conn: Connection, cmd: Schedule) -> None:
        tools = self.tools
        if not tools._may_write(conn, cmd.topic) or not tools._may_create(conn, cmd.topic):
            return
        try:
            journal, first = self.broker.schedules.add(cmd)
        except Refused as e:
            conn.reply(replies.err(e.reason))
            return
        log.info("scheduled", topic=cmd.topic, name=cmd.name, next=first, user=_name(conn))
        self.broker.reply_after_write(conn, journal, scheduled(cmd.topic, cmd.name, first))

    def cmd_UNSCHEDULE(self, conn: Connection, cmd: Unschedule) -> None:
        if not self.tools._may(conn, cmd.topic, "publish"):
            return
        try:
            journal = self.broker.schedules.remove(cmd.topic, cmd.name)
        except Refused as e:
            conn.reply(replies.err(e.reason))
            return
        log.info("unscheduled", topic=cmd.topic, name=cmd.name, user=_name(conn))
        self.broker.reply_after_write(conn, journal, unscheduled(cmd.topic, cmd.name))

    def cmd_SCHEDULES(self, conn: Connection, cmd: ListSchedules) -> None:
        user = conn.user
        if cmd.topic is not None and not _may_see(conn, cmd.topic):
            assert user is not None
            log.warning("permission_denied", peer=conn.peer, user=user.name, topic=cmd.topic)
            conn.reply(replies.err("permission denied"))
            return
        lines = [
            schedule_line(
                job.topic,
                job.name,
                job.timing,
                job.next_due,
                job.last_due,
                job.fired,
                job.nbytes,
                job.options,
            )
            for job in self.broker.schedules.listing(cmd.topic)
            if _may_see(conn, job.topic)
        ]
        lines.append(SCHEDULES_END)
        conn.reply(b"".join(lines))


def _may_see(conn: Connection, topic: str) -> bool:
    user = conn.user
    return user is None or user.may_publish(topic) or user.may_subscribe(topic)


def _name(conn: Connection) -> str | None:
    return conn.user.name if conn.user is not None else None
