"""A small append-only JSON-lines journal with atomic compaction.

For state that changes often but stays small (consumer-group positions): append
entries, replay them on start, and now and then ``rewrite`` the file as a
snapshot so it never grows without bound.
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Callable

import orjson
import structlog

from broker.storage.fsio import fsync_dir, rollback, write_all
from broker.storage.records import StorageError

log = structlog.get_logger(__name__)

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC


class Journal:
    """Entries are JSON objects, one a line; a torn tail is cut off on replay."""

    def __init__(
        self, path: pathlib.Path, on_pending: Callable[[Journal], None] | None = None
    ) -> None:
        """No disk access until replay(), write() or rewrite().

        ``on_pending`` is told when the journal goes from nothing buffered to
        something, so its owner can write just the journals that changed.
        """
        self.path = path
        self._on_pending = on_pending
        self._fd: int | None = None
        self._size = 0
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self._dirty = False
        self._dir_dirty = False

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    @property
    def size(self) -> int:
        return self._size

    def _ensure_open(self) -> int:
        if self._fd is None:
            if not self.path.parent.is_dir():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            fd = os.open(self.path, _FLAGS, 0o644)
            self._size = os.lseek(fd, 0, os.SEEK_END)
            with self._lock:
                self._fd = fd
                self._dir_dirty = self._dir_dirty or not existed
        return self._fd

    def replay(
        self, valid: Callable[[dict[str, object]], bool] | None = None
    ) -> list[dict[str, object]]:
        """Every valid entry, in order; from the first bad line on, the file is cut off.

        A bad line in the middle cannot be a torn write, but entries after it may
        depend on it, so the honest answer is the longest valid prefix. ``valid``
        lets the owner reject JSON that is not one of its entries the same way.
        """
        fd = self._ensure_open()
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
        entries: list[dict[str, object]] = []
        good = 0
        while good < len(data):
            nl = data.find(b"\n", good)
            if nl < 0:
                break
            try:
                obj = orjson.loads(data[good : nl + 1])
            except orjson.JSONDecodeError:
                break
            if not isinstance(obj, dict) or (valid is not None and not valid(obj)):
                break
            entries.append(obj)
            good = nl + 1
        if good < size:
            log.warning(
                "journal_truncated", path=str(self.path), bytes_dropped=size - good, kept=good
            )
            rollback(fd, good)
            os.fsync(fd)
        self._size = good
        return entries

    def append(self, entry: dict[str, object]) -> None:
        self.append_line(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))

    def append_line(self, line: bytes) -> None:
        """Buffer an entry the caller already encoded as one JSON line (hot paths)."""
        if not self._pending and self._on_pending is not None:
            self._on_pending(self)
        self._pending.append(line)

    def write(self) -> None:
        """One write of everything buffered; on failure the file is cut back and entries dropped."""
        if not self._pending:
            return
        data, self._pending = b"".join(self._pending), []
        try:
            fd = self._ensure_open()
        except OSError as exc:
            raise StorageError(str(exc)) from exc
        try:
            write_all(fd, data)
        except OSError as exc:
            try:
                rollback(fd, self._size)
            except OSError as undo_exc:
                log.error("journal_rollback_failed", path=str(self.path), error=str(undo_exc))
            log.error("journal_write_failed", path=str(self.path), error=str(exc))
            raise StorageError(str(exc)) from exc
        self._size += len(data)
        with self._lock:
            self._dirty = True

    def sync(self) -> None:
        """fsync on a duplicate fd so rewrite()/close() on the loop cannot pull it away."""
        with self._lock:
            fd = os.dup(self._fd) if self._fd is not None and self._dirty else None
            self._dirty = False
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            if fd is not None:
                os.fsync(fd)
            if dir_dirty:
                fsync_dir(self.path.parent)
        except OSError as exc:
            raise StorageError(f"fsync failed: {exc}") from exc
        finally:
            if fd is not None:
                os.close(fd)

    def rewrite(self, entries: list[dict[str, object]]) -> None:
        """Replace the journal by a snapshot, atomically.

        ``entries`` must describe the whole state, including anything appended but
        not yet written: the pending buffer is discarded.
        """
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = b"".join(orjson.dumps(e) + b"\n" for e in entries)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, _FLAGS | os.O_TRUNC, 0o644)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            fsync_dir(self.path.parent)
            new_fd = os.open(self.path, _FLAGS, 0o644)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.error("journal_rewrite_failed", path=str(self.path), error=str(exc))
            raise StorageError(str(exc)) from exc
        os.lseek(new_fd, 0, os.SEEK_END)
        self._pending = []
        with self._lock:
            old, self._fd = self._fd, new_fd
            self._dirty = False
        self._size = len(data)
        if old is not None:
            os.close(old)

    def close(self) -> None:
        try:
            self.write()
            self.sync()
        finally:
            with self._lock:
                fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)
