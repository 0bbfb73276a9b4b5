"""A small append-only JSON-lines journal with atomic compaction.

For state that changes often but stays small (consumer-group positions): append
entries, replay them on start, and now and then rewrite the file as a snapshot
so it never grows without bound. ``rewrite_off_loop`` does that while the
journal stays in use: a snapshot's fsyncs take milliseconds, and a broker that
stalls for them shows it in every delivery's latency.

Format 2 (this release) starts with the line ``{"journal":2}`` and every line,
that one included, carries a CRC32C (checksum.py). A line that fails its check
is damage: it is reported, skipped, and replay goes on with the next line, so
one bad byte costs one entry; the owner decides what a lost entry means (its
``replay_lines`` gets a ``None`` in its place). Format 1 (earlier releases, no
header, no checks) still replays; its owner rewrites it as format 2 once read.
A torn tail (a partial last line, or bad lines after the last good one: what a
crash or a power loss leaves) is cut off and logged as ``journal_truncated``.

A rewrite goes to ``.<name>.tmp`` (a leading dot: no topic or group name can
make that name), is fsynced, then renamed over the journal: a crash at any step
leaves the old journal or the new one, both whole.

Open files are bounded: journals share an ``OpenFiles`` that closes the least
recently written one past its limit (no fsync needed: an fsync through any
descriptor of the file flushes it, and ``sync`` opens one if it must).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NoReturn

import orjson
import structlog

from linemq.broker.storage.checksum import seal, unseal
from linemq.broker.storage.damage import JOURNAL_LINE, Damage, DamageReport
from linemq.broker.storage.fsio import fsync_dir, rollback, write_all
from linemq.broker.storage.records import StorageError

log = structlog.get_logger(__name__)

_FLAGS = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
FORMAT: Final = 2
HEADER_BODY: Final = b'{"journal":2}'
HEADER: Final = seal(HEADER_BODY)


class OpenFiles:
    """Keeps at most ``limit`` journals' descriptors open: the least recently written closes.

    10,000 groups would otherwise hold 10,000 descriptors. A write to a journal
    that was closed reopens it (one ``open``), which only the idlest pay.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._open: OrderedDict[Journal, None] = OrderedDict()

    def used(self, journal: Journal) -> None:
        opened = self._open
        if journal in opened:
            opened.move_to_end(journal)
            return
        opened[journal] = None
        while len(opened) > self.limit:
            idle, _ = opened.popitem(last=False)
            idle.release()

    def forget(self, journal: Journal) -> None:
        self._open.pop(journal, None)

    def __len__(self) -> int:
        return len(self._open)


class Journal:
    """Entries are JSON objects, one a line; a torn tail is cut off on replay."""

    def __init__(
        self,
        path: pathlib.Path,
        on_pending: Callable[[Journal], None] | None = None,
        *,
        sync_each_write: bool = True,
        files: OpenFiles | None = None,
        damage: DamageReport | None = None,
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
        self._files = files
        self._damage = damage
        self._closed = False
        self._deleted = False
        self.version = FORMAT  # what replay() found: 1 for a journal of an earlier release
        self.damaged = 0  # lines replay() found damaged (reported, skipped)

    @property
    def label(self) -> str:
        return str(self.path)

    @property
    def has_pending(self) -> bool:
        return bool(self._pending)

    def exists(self) -> bool:
        return self.path.exists()

    @property
    def size(self) -> int:
        return self._size

    @property
    def needs_rewrite(self) -> bool:
        """Replay found an earlier format or damage: the owner should write a fresh snapshot."""
        return self.damaged > 0 or (self.version != FORMAT and self._size > 0)

    def _ensure_open(self) -> int:
        fd = self._fd
        if fd is None:
            if not self.path.parent.is_dir():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            existed = self.path.exists()
            fd = os.open(self.path, _FLAGS, 0o644)
            self._size = os.lseek(fd, 0, os.SEEK_END)
            with self._lock:
                self._fd = fd
                self._dir_dirty = self._dir_dirty or not existed
        if self._files is not None:
            self._files.used(self)
        return fd

    def release(self) -> None:
        """Close the descriptor (the journal stays usable: the next write reopens it)."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def replay(
        self, valid: Callable[[dict[str, object]], bool] | None = None
    ) -> list[dict[str, object]]:
        """Every intact entry, in order (damaged lines reported and skipped)."""
        return [e for e in self.replay_lines(valid) if e is not None]

    def replay_lines(
        self, valid: Callable[[dict[str, object]], bool] | None = None
    ) -> list[dict[str, object] | None]:
        """Every line's entry in order, ``None`` for a line that failed its check.

        ``valid`` lets the owner reject JSON that is not one of its entries the
        same way. Only a torn last line (no newline) is cut off the file.
        """
        self._tmp.unlink(missing_ok=True)  # a rewrite the last run did not finish
        self.path.with_name(self.path.name + ".tmp").unlink(missing_ok=True)  # earlier name
        fd = self._ensure_open()
        size = os.fstat(fd).st_size
        scan = scan_journal(os.pread(fd, size, 0), valid)
        self.version, end = scan.version, scan.end
        self.damaged = len(scan.damaged)
        for position, reason in scan.damaged:
            self._report(position, reason)
        entries = scan.entries
        if end < size:
            log.warning(
                "journal_truncated", path=str(self.path), bytes_dropped=size - end, kept=end
            )
            rollback(fd, end)
            os.fsync(fd)
        self._size = end
        return entries

    def _report(self, position: int, reason: str) -> None:
        damage = Damage(JOURNAL_LINE, str(self.path), position, reason=reason)
        if self._damage is not None:
            self._damage.report(damage)
        else:
            log.error("storage_damage", **damage.describe())

    def rewrite_now(self, entries: list[dict[str, object]]) -> None:
        """Replace the journal by ``entries`` at once (start-up: migration and repair)."""
        self.write()
        data = _encode(entries)
        try:
            self._write_tmp(data, truncate=True)
        except OSError as exc:
            self._drop_tmp(exc)
        self._swap(len(data), synced=True)
        self.sync()
        self.version, self.damaged = FORMAT, 0

    def append(self, entry: dict[str, object]) -> None:
        self.append_line(seal(orjson.dumps(entry)))

    def append_line(self, line: bytes) -> None:
        """Buffer entries the caller already encoded and sealed (``seal``) as lines (hot paths)."""
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
        if self._deleted:  # a late append (a task of its owner still finishing): nowhere to go
            self._pending = []
        if not self._pending:
            return True
        data, self._pending = b"".join(self._pending), []
        try:
            fd = self._ensure_open()
        except OSError as exc:
            raise StorageError(str(exc)) from exc
        if self._size == 0:
            data = HEADER + data
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
            reopen = self._fd is None and self._dirty  # closed as idle before its fsync
            self._dirty = False
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            if reopen:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
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
            elif tail and not self._closed:  # no await up to the swap: nothing is written
                self._write_tmp(tail, truncate=False, sync=False)
            if self._closed:
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
        return self.path.with_name("." + self.path.name + ".tmp")

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
        if self._files is not None:
            self._files.used(self)

    def delete(self) -> None:
        """Gone for good: the file is unlinked and buffered entries dropped.

        On the loop, so that a journal of the same name made later (a group created
        again) is never the one removed; ``fsync_dir`` of the folder makes it durable.
        """
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(str(exc)) from exc
        self._sealing = False
        self._closed = True  # a rewrite still running gives up and removes its file
        self._deleted = True  # and a late append never creates the file again
        self._pending = []
        with self._lock:
            fd, self._fd = self._fd, None
            self._dirty = self._dir_dirty = False
        if self._files is not None:
            self._files.forget(self)
        if fd is not None:
            os.close(fd)
        self._tmp.unlink(missing_ok=True)

    def close(self) -> None:
        self._sealing = False  # a rewrite still running gives up (the fd is gone)
        self._closed = True
        try:
            self.write()
            self.sync()
        finally:
            if self._files is not None:
                self._files.forget(self)
            self.release()


@dataclass(slots=True)
class Scan:
    """What a journal's bytes hold: entries (None where a line was lost) and where damage is."""

    version: int
    entries: list[dict[str, object] | None]
    damaged: list[tuple[int, str]]  # (byte position, why) of each line lost
    end: int  # past the last good line: the rest is a torn write


def scan_journal(data: bytes, valid: Callable[[dict[str, object]], bool] | None = None) -> Scan:
    """Check every line of a journal's contents (pure: replay and ``verify`` share it).

    Bad lines after the last good one are a torn write (a crash, or blocks a power
    loss left unwritten), cut off like a partial line: nothing after them depends
    on them. Only when no line is good are they damage, so the owner knows the
    journal held something it lost.
    """
    lines = data.split(b"\n")[:-1]  # the part after the last newline is torn anyway
    scan = Scan(_version(lines), [], [], 0)
    position = 0
    for line in lines:
        here, position = position, position + len(line) + 1
        if scan.version == FORMAT:
            body = unseal(line)
            if body == HEADER_BODY:
                scan.end = position
                continue
        else:
            body = line
        entry = _entry(body, valid)
        if entry is None:
            scan.damaged.append((here, "checksum" if body is None else "not an entry"))
        else:
            scan.end = position
        scan.entries.append(entry)
    if any(e is not None for e in scan.entries):
        while scan.entries[-1] is None:  # a torn tail
            scan.entries.pop()
            scan.damaged.pop()
    else:
        scan.end = position
    return scan


def _encode(entries: list[dict[str, object]]) -> bytes:
    return HEADER + b"".join(seal(orjson.dumps(e)) for e in entries)


def _version(lines: list[bytes]) -> int:
    """Format 2 if the file starts with its header or any line carries a valid check."""
    if not lines or lines[0] == HEADER[:-1]:
        return FORMAT
    # A sealed line is JSON too, so a journal is of an earlier release only when no line
    # passes a check (a damaged header must not turn the checks off).
    return FORMAT if any(unseal(line) is not None for line in lines) else 1


def _entry(
    body: bytes | None, valid: Callable[[dict[str, object]], bool] | None
) -> dict[str, object] | None:
    if body is None:
        return None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or (valid is not None and not valid(obj)):
        return None
    return obj
