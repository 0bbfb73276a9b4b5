"""Deleted topics: their files go, their next offset stays.

``DELETE <topic>`` removes a topic's directory, but a client that saw its
offsets may come back (a fanout subscriber resuming ``from=<last + 1>``, a
dashboard, a log of offsets). So a topic made again under the same name starts
above every offset the deleted one handed out: ``deleted/<topic>`` keeps that
next offset, a few bytes per name, for as long as the data dir lives.

The order makes a crash at any point safe: the tombstone is written and
fsynced first (a crash then leaves the topic whole, and the tombstone's offset
is still its next one); the directory is then renamed into ``.trash/`` in one
step and the rename fsynced (the topic is gone); the trash is removed last, and
whatever a crash leaves there is removed at the next start.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from typing import Final

import structlog

from linemq.broker.storage.fsio import fsync_dir, write_all

log = structlog.get_logger(__name__)

DELETED_DIR: Final = "deleted"
TRASH_DIR: Final = ".trash"


def load_floors(data_dir: pathlib.Path) -> dict[str, int]:
    """Deleted topics' next offsets; also empties what a crash left in the trash."""
    trash = data_dir / TRASH_DIR
    if trash.is_dir():
        shutil.rmtree(trash, ignore_errors=True)
    floors: dict[str, int] = {}
    folder = data_dir / DELETED_DIR
    if not folder.is_dir():
        return floors
    for path in folder.iterdir():
        if path.name.startswith("."):
            path.unlink(missing_ok=True)  # a tombstone a crash left half-written
            continue
        try:
            floors[path.name] = int(path.read_text().strip())
        except (OSError, ValueError) as exc:  # never below it: the topic's own log still says
            log.error("tombstone_unreadable", path=str(path), error=str(exc))
    return floors


def write_tombstone(data_dir: pathlib.Path, topic: str, next_offset: int) -> None:
    """Durably record that ``topic``'s offsets go on at ``next_offset`` (blocking)."""
    folder = data_dir / DELETED_DIR
    created = not folder.is_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{topic}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, b"%d\n" % next_offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, folder / topic)
    fsync_dir(folder)
    if created:
        fsync_dir(data_dir)


def remove_directory(topics_dir: pathlib.Path, topic: str) -> None:
    """Rename ``topics/<topic>`` into the trash in one step (durable), then delete it."""
    source = topics_dir / topic
    if not source.exists():
        return
    trash = topics_dir.parent / TRASH_DIR
    trash.mkdir(exist_ok=True)
    target = trash / f"{topic}.{time.time_ns()}"
    os.replace(source, target)
    fsync_dir(topics_dir)
    shutil.rmtree(target, ignore_errors=True)
