"""A small append-only JSON-lines journal with atomic compaction.

For state that changes often but stays small (consumer-group positions): append
entries, replay them on start, and now and then rewrite the file as a snapshot
so it never grows without bound. ``rewrite_off_loop`` does that while the
journal stays in use: a snapshot's fsyncs take milliseconds, and a broker that
stalls for them shows it in every delivery's latency.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import threading
from collections.abc import Callable
from typing import NoReturn

import orjson
import structlog

from broker.storage.fsio import fsync_dir, rollback, write_all
from broker.storage.records import StorageError

log = structlog.get_logger(__name__)

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC


class Journal:
    """Entries are JSON objects, one a line; a torn tail is cut off on replay."""

    def __init__(
        self,
        path: pathlib.Path,
        on_pending: Callable[[Journal], None] | None = None,
        *,
        sync_each_write: bool = True,
    ) -> None:
        """No disk access until replay(), write() or a rewrite.

        ``on_pending`` is told when the journal goes from nothing buffered to
        something, so its owner can write just the journals that changed.
        ``sync_each_write``: every write is fsynced before its replies go out
        (``--fsync always``), so a rewrite must fsync what it copies too.
        """
        self.path = path
        self._on_pending = on_pending
        self._sync_each_write = sync_each_write
        self._fd: int | None = None
        self._size = 0
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self._dirty = False
        self._dir_dirty = False
        self._since: list[bytes] | None = None  # written during an off-loop rewrite
        self._sealing = False  # the rewrite's last step: writes wait in the buffer

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
        self._tmp.unlink(missing_ok=True)  # a rewrite the last run did not finish
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

    def write(self) -> bool:
        """One write of everything buffered; on failure the file is cut back and entries dropped.

        False while a rewrite finishes: entries stay buffered, and ``on_pending`` is
        called again once they can be written.
        """
        if self._sealing:
            return False
        if not self._pending:
            return True
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
        if self._since is not None:
            self._since.append(data)
        with self._lock:
            self._dirty = True
        return True

    def sync(self) -> None:
        """fsync on a duplicate fd so a rewrite or close() on the loop cannot pull it away."""
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

    async def rewrite_off_loop(self, entries: list[dict[str, object]]) -> bool:
        """Replace the journal by a snapshot while appends and writes go on.

        ``entries`` describe the state up to now (buffered entries included). The
        snapshot is written and fsynced to a temporary file in a worker thread
        while the old file stays the journal. Then the lines written meanwhile
        are copied over and the new file takes the name: at any crash the name
        holds one complete journal, and nothing is written twice or lost.

        With ``sync_each_write`` the copied lines are fsynced first, and writes
        wait in the buffer for that one fsync. Otherwise they are copied at once,
        with no wait, and synced like any other write (``--fsync interval``):
        under load that fsync stalled deliveries for milliseconds, several times a
        second. The directory entry is made durable by the journal's next
        ``sync``. False if the journal was closed meanwhile.
        """
        if self._since is not None:
            raise RuntimeError("a rewrite is already running")
        self.write()  # what came before the snapshot belongs to the old file only
        self._since = []
        data = _encode(entries)
        try:
            await asyncio.to_thread(self._write_tmp, data, truncate=True)
            tail = b"".join(self._since)
            if self._sync_each_write:
                self._sealing = True  # writes wait in the buffer for the tail's fsync
                if tail:
                    await asyncio.to_thread(self._write_tmp, tail, truncate=False)
            elif tail and self._fd is not None:  # no await up to the swap: nothing is written
                self._write_tmp(tail, truncate=False, sync=False)
            if self._fd is None:
                self._tmp.unlink(missing_ok=True)
                return False
            self._swap(len(data) + len(tail), synced=self._sync_each_write or not tail)
            if not self._sync_each_write and self._on_pending is not None:
                self._on_pending(self)  # so the next sync covers the new file and its name
            return True
        except OSError as exc:
            self._drop_tmp(exc)
        finally:
            self._since = None
            if self._sealing:
                self._sealing = False
                if self._on_pending is not None:
                    self._on_pending(self)  # write what waited, and settle its replies

    @property
    def _tmp(self) -> pathlib.Path:
        return self.path.with_name(self.path.name + ".tmp")

    def _write_tmp(self, data: bytes, *, truncate: bool, sync: bool = True) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = _FLAGS | (os.O_TRUNC if truncate else os.O_APPEND)
        fd = os.open(self._tmp, flags, 0o644)
        try:
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _drop_tmp(self, exc: OSError) -> NoReturn:
        self._tmp.unlink(missing_ok=True)
        log.error("journal_rewrite_failed", path=str(self.path), error=str(exc))
        raise StorageError(str(exc)) from exc

    def _swap(self, size: int, *, synced: bool) -> None:
        """The temporary file (``size`` bytes, all fsynced or not) becomes the journal."""
        try:
            os.replace(self._tmp, self.path)
            new_fd = os.open(self.path, _FLAGS, 0o644)
        except OSError as exc:
            self._drop_tmp(exc)
        os.lseek(new_fd, 0, os.SEEK_END)
        with self._lock:
            old, self._fd = self._fd, new_fd
            self._dirty = not synced
            self._dir_dirty = True
        self._size = size
        if old is not None:
            os.close(old)

    def close(self) -> None:
        self._sealing = False  # a rewrite still running gives up (the fd is gone)
        try:
            self.write()
            self.sync()
        finally:
            with self._lock:
                fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)


def _encode(entries: list[dict[str, object]]) -> bytes:
    return b"".join(orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE) for e in entries)
