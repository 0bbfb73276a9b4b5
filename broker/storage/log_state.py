"""The in-memory state of a topic log's active segment and pending batches, and name rules.

Kept out of ``topic_log`` so that module stays about behaviour, not bookkeeping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from broker.storage.index import SegmentIndex
from broker.storage.records import Record

_TOPIC_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,255}")


def check_topic_name(name: str) -> str:
    """Refuse names that could leave the topics directory: a backstop, callers validate too."""
    if "/" in name or "\0" in name or name.startswith(".") or ".." in name:
        raise ValueError(f"invalid topic name: {name!r}")
    if not _TOPIC_NAME.fullmatch(name):
        raise ValueError(f"invalid topic name: {name!r}")
    return name


@dataclass(slots=True)
class Active:
    """The segment being appended to. Its fds belong to the loop thread."""

    base: int
    header_end: int
    log_fd: int
    idx_fd: int
    size: int
    idx_size: int
    last_offset: int
    index: SegmentIndex


@dataclass(slots=True)
class Batch:
    """Pending records for one segment; ``new_segment`` batches create their file on write."""

    base: int
    new_segment: bool
    start_size: int
    last_index_pos: int | None
    has_records: bool
    chunks: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    records: list[Record] = field(default_factory=list)
    index: list[tuple[int, int]] = field(default_factory=list)
