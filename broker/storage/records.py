"""The persistent record: what one line of a topic log holds.

Kept apart from delivery bookkeeping (attempts, timers) the way beanstalkd keeps
its on-disk ``Jobrec`` apart from the in-memory ``Job``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Record:
    """One stored message. ``offset`` counts from 1 within its topic.

    Treat it as immutable. It is not ``frozen`` only because one is built per
    published message and a frozen dataclass takes three times as long to build.
    """

    offset: int
    id: str
    ts: float
    msg: str


class StorageError(Exception):
    """An append could not be made durable (disk full, I/O error...).

    Raised after the log has been rolled back, so nothing half-written is served.
    """
