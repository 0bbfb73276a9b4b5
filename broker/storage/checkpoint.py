"""The file store's write-ahead log at work: commits logged, segments written later, replay.

A commit logs the small appends of every topic in one write (``log``); a topic's
lines reach its segment file once they add up (``FLUSH_BYTES``), before anything
reads its segments from disk (``flush``), and at each checkpoint. A checkpoint
(every ``CHECKPOINT_BYTES`` of log or ``CHECKPOINT_SECONDS``) starts a new log
file, writes every topic's logged lines, then in a worker thread fsyncs each
segment written since the last one, and only then unlinks the older log files.
So a record is always in a synced log file or a synced segment, and the log
never holds more than a checkpoint's worth. A topic that gets ``DIRECT_BYTES`` in
one commit writes its own segment instead (the store decides): one write of its
own is already cheap per message, and the log would only be a second copy; so
do a new topic's first records and a segment roll (``TopicLog.loggable``).

At start-up ``replay`` puts what the log holds past each topic's segments back
into them, through the same placing and writing as appends, fsyncs them, and
drops the log: the data dir is then as an older broker expects it.
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

import structlog

from linemq.broker.storage.damage import DamageReport
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.topic_log import TopicLog
from linemq.broker.storage.wal import WriteAheadLog, list_wal
from linemq.broker.storage.wal_replay import read_frames

log = structlog.get_logger(__name__)

FLUSH_BYTES: Final = 64 * 1024
DIRECT_BYTES: Final = 4 * 1024
CHECKPOINT_BYTES: Final = 32 * 1024 * 1024
CHECKPOINT_SECONDS: Final = 1.0
CHECKPOINT_FLUSHES: Final = 256
"""Topics a checkpoint writes after one commit at most: with 10,000 topics it takes a few
dozen commits, rather than stopping the loop for one long run of writes."""
REPLAY_GAP: Final = "records missing from the write-ahead log"


class Checkpointer:
    """Which topics hold lines only the log has, which were written since the last
    checkpoint, and the checkpoint running now. Loop thread, but for the worker."""

    def __init__(self, folder: pathlib.Path, keep: Iterable[pathlib.Path] = ()) -> None:
        self.wal = WriteAheadLog(folder)
        self._kept = set(keep)  # files with records no topic could take: never removed
        self._unflushed: dict[TopicLog, None] = {}
        self._written: dict[TopicLog, None] = {}  # segments to fsync at the next checkpoint
        self._held = False  # a log lost its only other copy's write: keep every file
        self._lock = threading.Lock()
        self._unsynced: list[TopicLog] = []  # a failed checkpoint's logs, for the next one
        self._running: Future[None] | None = None
        self._draining: list[TopicLog] = []  # a checkpoint's topics still to write
        self._older: list[pathlib.Path] | None = None  # its files, once they are written
        self._flush_failed = False
        self._executor: ThreadPoolExecutor | None = None
        self._started = time.monotonic()
        self._logged = 0  # bytes logged since the last checkpoint began

    def log(self, logs: list[TopicLog]) -> None:
        """One write of every log's pending records; ``logged`` each once it returns."""
        frames: list[bytes] = []
        for topic_log in logs:
            frames += topic_log.wal_frame()
        data = b"".join(frames)
        self.wal.append(data)
        if not self._logged:  # the age that starts a checkpoint is the oldest record's
            self._started = time.monotonic()
        self._logged += len(data)

    def logged(self, topic_log: TopicLog) -> None:
        topic_log.logged()
        if topic_log.unflushed_bytes >= FLUSH_BYTES:
            self.flush(topic_log)
        else:
            self._unflushed[topic_log] = None

    def wrote(self, topic_log: TopicLog) -> None:
        """``topic_log`` wrote its segment itself: fsync it before dropping the log."""
        self._written[topic_log] = None
        self._unflushed.pop(topic_log, None)

    def flush(self, topic_log: TopicLog) -> bool:
        """Write what the log holds for ``topic_log`` to its segment; False if that failed
        (the log keeps it: a later flush tries again)."""
        try:
            topic_log.flush()
        except StorageError:
            self._unflushed[topic_log] = None
            return False
        self.wrote(topic_log)
        return True

    def flush_before_read(self, topic_log: TopicLog) -> None:
        """A read from the segment files must find what reads were shown already."""
        if topic_log in self._unflushed and not self.flush(topic_log):
            raise StorageError(f"topic {topic_log.name}: its segment could not be written")

    def forget(self, topic_log: TopicLog) -> None:
        """``topic_log`` is being deleted (closed in a worker thread): write its lines now,
        so no checkpoint touches it again; if that fails, keep the log's files."""
        if not self.flush(topic_log):
            self._held = True
        self._unflushed.pop(topic_log, None)

    # -- checkpoints -------------------------------------------------------------------------

    def maybe_checkpoint(self) -> None:
        """After a commit: go on with a checkpoint, or start one if the log grew or aged enough."""
        if self._older is not None:
            self._drain()
            return
        if self._running is not None:
            if not self._running.done():
                return
            self._running = None
        if self._logged < CHECKPOINT_BYTES and (
            not self._logged or time.monotonic() - self._started < CHECKPOINT_SECONDS
        ):
            return  # (checked after commits only: an idle log waits for the next one, or close)
        self._logged = 0
        try:
            self._older = self.wal.rotate()
        except OSError as exc:
            log.error("wal_rotate_failed", error=str(exc))
            return
        self._draining = list(self._unflushed)
        self._flush_failed = False
        self._drain()

    def _drain(self) -> None:
        """Write the lines the older files hold to their segments, ``CHECKPOINT_FLUSHES``
        topics at a time (loop thread); once all are, fsync and drop in the worker."""
        todo, unflushed = self._draining, self._unflushed
        n = 0
        while todo and n < CHECKPOINT_FLUSHES:
            topic_log = todo.pop()
            if topic_log in unflushed:  # not written meanwhile (a read, the threshold...)
                self._flush_failed = not self.flush(topic_log) or self._flush_failed
                n += 1
        if todo:
            return
        older, self._older = self._older or [], None
        with self._lock:
            logs = [*self._written, *self._unsynced]
            self._unsynced = []
        self._written = {}
        keep = self._flush_failed or self._held
        drop = [] if keep else [p for p in older if p not in self._kept]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="linemq-checkpoint")
        self._running = self._executor.submit(self._finish, logs, drop)

    def _finish(self, logs: list[TopicLog], drop: list[pathlib.Path]) -> None:
        """fsync the segments, then unlink the log files they cover (a worker thread).
        The log's own sync closes the files rotated out (whatever --fsync says)."""
        try:
            self.wal.sync()
            for topic_log in dict.fromkeys(logs):
                topic_log.sync()
            self.wal.remove(drop)
        except (OSError, StorageError) as exc:
            log.error("checkpoint_failed", error=str(exc), wal_files_kept=len(drop))
            with self._lock:
                self._unsynced += logs
            return
        if drop:
            log.debug("checkpoint_done", segments_synced=len(logs), wal_files_dropped=len(drop))

    def close(self, close_logs: Callable[[], None]) -> None:
        """Wait for a running checkpoint, close the topic logs (each writes and fsyncs what it
        holds), then drop the whole log: a clean data dir has none."""
        if self._running is not None:
            self._running.result()
            self._running = None
        if self._executor is not None:
            self._executor.shutdown()
        self._draining = []
        self._older = None
        self._unflushed.clear()
        self._written.clear()
        try:
            close_logs()
        finally:
            self.wal.close()
        if self._held:
            return
        self.wal.remove([p for _, p in list_wal(self.wal.folder) if p not in self._kept])


def replay(
    folder: pathlib.Path,
    damage: DamageReport,
    log_for: Callable[[str, int], TopicLog | bool],
    on_failure: Callable[[TopicLog, Exception], None],
) -> tuple[list[pathlib.Path], int]:
    """Put what the log holds past each topic's end into its segments (written, fsynced),
    then remove the log's files. ``log_for(topic, last offset)``: the topic's log; False if
    its records must not come back (a deleted topic, a name no topic may have); True if
    they cannot now (an unopenable topic): the file is kept for a later start.

    Returns the files kept (records of a topic that could not take them) and the
    sequence number for the next file.
    """
    files = list_wal(folder)
    kept: list[pathlib.Path] = []
    restored: dict[TopicLog, None] = {}
    for i, (_seq, path) in enumerate(files):
        keep = False
        for frame in read_frames(path, damage, cut_tail=i == len(files) - 1):
            topic_log = log_for(frame.topic, frame.last_seen)
            if isinstance(topic_log, bool):
                keep = keep or topic_log
                continue
            try:
                topic_log.restore(frame.records, frame.last if frame.whole else 0, REPLAY_GAP)
            except (OSError, StorageError, ValueError) as exc:
                on_failure(topic_log, exc)
                keep = True
                continue
            restored[topic_log] = None
        if keep:
            kept.append(path)
    failed = False
    for topic_log in restored:
        try:
            topic_log.write()
            topic_log.sync()
        except (OSError, StorageError) as exc:
            on_failure(topic_log, exc)
            failed = True
    if restored:
        log.warning("wal_replayed", topics=len(restored), files=len(files))
    next_seq = files[-1][0] + 1 if files else 1
    if failed:
        return [p for _, p in files], next_seq
    drop = [p for _, p in files if p not in kept]
    if drop:
        WriteAheadLog(folder).remove(drop)
    return kept, next_seq
