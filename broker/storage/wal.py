"""The shared write-ahead log: every topic's small appends of a commit in one ``write()``.

With records spread over many topics, writing each topic's segment file every
tick costs a ``write()`` (and an fsync, and past the open-files budget an
``open``/``close``) per topic, which at 1,000 topics is about one per message. So a
commit puts each topic's new lines into one frame of this log instead, and all
frames go out in one write; the segments get the same lines later, in bulk
(``TopicLog.flush``), and a checkpoint (``store.FileStore``) fsyncs them and drops
the log files they cover. Redis' AOF and RabbitMQ's message store pay per tick,
not per key, in the same way.

The files, ``<data>/.wal/<seq>.wal`` (``.wal`` is outside ``topics/``, and no topic
name may start with a dot), are sealed lines like segments (``checksum``)::

    {"linemq_wal":1,"seq":3,"c":...}                      the file's header: its format
    {"topic":"orders","first":41,"n":2,"len":214,"c":...}  a frame: whose records, how many
    {"id":"msg_..","offset":41,"ts":...,"msg":"a","c":...}  ``len`` bytes of segment lines,
    {"id":"msg_..","offset":42,"ts":...,"msg":"b","c":...}  exactly as the segment gets them

A frame's records are the topic's offsets ``first .. first + n - 1``; each line
keeps its own check, so damage costs the lines it hits (see ``wal_replay``).
"""

from __future__ import annotations

import os
import pathlib
import threading
from typing import Final

import orjson
import structlog

from linemq.broker.storage.checksum import seal
from linemq.broker.storage.fsio import fsync_dir, rollback, write_all
from linemq.broker.storage.records import StorageError

log = structlog.get_logger(__name__)

WAL_DIR: Final = ".wal"
WAL_VERSION: Final = 1
WAL_SUFFIX: Final = ".wal"
SEQ_DIGITS: Final = 20
FRAME_START: Final = b'{"topic":"'
_OPEN_FLAGS: Final = os.O_RDWR | os.O_CLOEXEC


def wal_path(folder: pathlib.Path, seq: int) -> pathlib.Path:
    return folder / f"{seq:0{SEQ_DIGITS}d}{WAL_SUFFIX}"


def list_wal(folder: pathlib.Path) -> list[tuple[int, pathlib.Path]]:
    """The log's files, oldest first, from their names alone."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        stem = path.name[: -len(WAL_SUFFIX)]
        if path.name.endswith(WAL_SUFFIX) and len(stem) == SEQ_DIGITS and stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


def encode_file_header(seq: int) -> bytes:
    return seal(orjson.dumps({"linemq_wal": WAL_VERSION, "seq": seq}))


def frame_header(topic: bytes, first: int, n: int, nbytes: int) -> bytes:
    """A frame's first line. ``topic`` passed ``check_topic_name``: nothing to escape."""
    return seal(b'{"topic":"%b","first":%d,"n":%d,"len":%d}' % (topic, first, n, nbytes))


class WriteAheadLog:
    """The current file, appended to from the loop thread; ``sync`` is safe in a worker.

    ``rotate`` starts a new file, so a checkpoint can drop the older ones once
    every record in them is in a synced segment.
    """

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._fd = -1
        self._seq = 0
        self.size = 0  # bytes of the current file
        self._dirty = False
        self._unsynced_fds: list[int] = []  # rotated-out files' fds, owned until fsynced
        self._dir_dirty = False

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    @property
    def holds_records(self) -> bool:
        """Anything past the current file's header."""
        return self.size > len(encode_file_header(self._seq))

    def start(self, seq: int) -> None:
        """Open a new file ``seq`` (loop thread): its header written, its entry fsynced
        with the next ``sync``, the previous file's fd handed to that ``sync`` too."""
        self.folder.mkdir(exist_ok=True)
        path = wal_path(self.folder, seq)
        header = encode_file_header(seq)
        fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, header)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        with self._lock:
            old, self._fd = self._fd, fd
            if old >= 0:
                self._unsynced_fds.append(old)
            self._seq = seq
            self.size = len(header)
            self._dirty = True
            self._dir_dirty = True

    def rotate(self) -> list[pathlib.Path]:
        """Start the next file; returns the older files, which nothing is appended to now."""
        self.start(self._seq + 1)
        return [path for seq, path in list_wal(self.folder) if seq < self._seq]

    def append(self, data: bytes) -> None:
        """One write of a commit's frames; on failure the file is as it was."""
        try:
            write_all(self._fd, data)
        except OSError as exc:
            try:
                rollback(self._fd, self.size)
            except OSError as undo:
                log.error("wal_rollback_failed", error=str(undo))
            raise StorageError(f"write-ahead log: {exc}") from exc
        self.size += len(data)
        self._dirty = True

    def sync(self) -> None:
        """fsync what was appended (and a new file's directory entry); a worker thread's job."""
        with self._lock:
            fds, self._unsynced_fds = self._unsynced_fds, []
            if self._dirty and self._fd >= 0:
                fds.append(os.dup(self._fd))
                self._dirty = False
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            for fd in fds:
                os.fsync(fd)
            if dir_dirty:
                fsync_dir(self.folder)
        except OSError as exc:
            log.error("wal_sync_failed", error=str(exc))
            raise StorageError(f"fsync failed: {exc}") from exc
        finally:
            for fd in fds:
                os.close(fd)

    def remove(self, paths: list[pathlib.Path]) -> None:
        """Unlink files every record of which is in a synced segment (blocking)."""
        for path in paths:
            path.unlink(missing_ok=True)
        if paths:
            fsync_dir(self.folder)

    def close(self) -> None:
        with self._lock:
            fds, self._unsynced_fds = self._unsynced_fds, []
            if self._fd >= 0:
                fds.append(self._fd)
                self._fd = -1
        for fd in fds:
            os.close(fd)

    def __repr__(self) -> str:
        return f"WriteAheadLog({str(wal_path(self.folder, self._seq))!r})"
