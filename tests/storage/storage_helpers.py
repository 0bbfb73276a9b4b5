"""Helpers shared by the storage tests (a plain module: conftest is not importable)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from linemq.broker.storage.topic_log import TopicLog

OpenLog = Callable[..., TopicLog]


def fill(log: TopicLog, n: int, prefix: str = "m") -> None:
    start = log.last_offset
    for i in range(start + 1, start + n + 1):
        log.append(f"{prefix}{i}", 1700000000.0 + i, f"msg_{i}")
    log.write()


def segment_files(log_dir: pathlib.Path, suffix: str = ".log") -> list[pathlib.Path]:
    return sorted(log_dir.glob(f"*{suffix}"))
