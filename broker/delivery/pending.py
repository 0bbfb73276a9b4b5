"""A message of a group taken from the log and not done yet: the one in-memory form of a
message that waits, and of the history of one in flight (lifecycle.py moves it along)."""

from __future__ import annotations

import enum

from linemq.broker.storage.records import Record


class Phase(enum.Enum):
    """Live, an in-flight message is a row, and ``IN_FLIGHT`` only marks one picked by the
    running pump; in a replay (no members, no rows) it marks what was out."""

    IN_FLIGHT = "in_flight"
    WAITING = "waiting"


class Pending:
    """A message of this group taken from the log and not done yet, with its history.

    ``record`` is there while it waits to be delivered; once out, the message is
    a row of a member's holdings, and this object stays (in ``history``) only if
    there is more to remember than a plain first delivery.
    """

    __slots__ = (
        "attempts",
        "error",
        "first_ts",
        "last_ts",
        "meta",
        "offset",
        "phase",
        "reason",
        "record",
        "retry_at",
    )

    def __init__(self, offset: int, record: Record | None = None) -> None:
        self.offset = offset
        self.record = record
        self.meta = record.meta if record is not None else None
        self.attempts = 0
        self.first_ts = 0.0
        self.last_ts = 0.0
        self.phase = Phase.WAITING
        self.retry_at = 0.0
        self.reason = ""
        self.error = ""  # the consumer's text for the last failure (NACK reason=, TERM)

    def is_plain(self) -> bool:
        """Nothing to remember while in flight beyond what a row holds."""
        return (
            self.meta is None
            and self.attempts == 1
            and self.first_ts == self.last_ts
            and not self.reason
        )
