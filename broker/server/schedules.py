"""Repeatable jobs: stored in a journal, fired by the broker on timers, exactly once per due time.

Each job is one entry of ``<data_dir>/.schedules`` (the checked journal format of
storage/journal.py; a leading dot, so no topic or group name can make it), and
each firing adds one. A ``SCHEDULE`` or ``UNSCHEDULE`` is answered once its entry
is written (``reply_after_write``), as an ``ACK`` is.

A job has one ``call_at`` timer on its next due time; nothing polls. A firing
publishes the job's payload through the broker's publish path with the publisher
id ``schedule:<name>:<due ms>``, then, once that publish is durable, journals the
firing. A broker killed in between fires that due time again after the restart,
and the dedup index (which reloads the last ``--dedup-window`` from the logs)
turns the second publish into a duplicate: one message per due time. For a
restart later than that window, ``open`` looks for the firing in the topic's log
itself before it fires again (``_find_unrecorded``).

After downtime a job fires once, for the latest due time that passed
(schedule_times.latest_due), then goes on from there.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import structlog

from linemq.broker.engine.dedup import DedupIndex
from linemq.broker.protocol.errors import ProtocolError
from linemq.broker.protocol.replies import ts_text
from linemq.broker.protocol.schedules import Schedule, ScheduleHeader, build_schedule, timing_words
from linemq.broker.server.put_records import record_text, stored_meta
from linemq.broker.server.schedule_times import (
    BadTiming,
    Timing,
    check,
    due_key,
    latest_due,
    next_due,
)
from linemq.broker.storage.log_store import LogStore
from linemq.broker.storage.records import Meta, Record, StorageError
from linemq.broker.storage.state_store import EventLog
from linemq.broker.storage.ticket import Appended

log = structlog.get_logger(__name__)

JOURNAL_NAME: Final = ".schedules"
COMPACT_BYTES: Final = 1 << 20
"""Bytes the journal may grow past twice its last snapshot before it is rewritten as one
(about 10,000 firings): the snapshot holds every payload, so it is not rewritten often."""
SCAN_LIMIT: Final = 100_000
"""Records ``_find_unrecorded`` reads at most to find a firing outside the dedup window."""
OPS: Final = ("set", "fire", "del")


class Refused(Exception):
    """A ``SCHEDULE``/``UNSCHEDULE`` the broker will not do; the text is the ``ERR`` reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Job:
    """One schedule in memory; ``entry`` is what the journal keeps of it."""

    serial: int
    spec: Schedule
    timing: Timing
    anchor: float
    fired: int = 0
    last_due: float | None = None
    last_at: float = 0.0
    handled: float = 0.0  # the latest due time fired or tried, recorded or not
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def since(self) -> float:
        return max(self.anchor, self.handled, self.last_due or 0.0)

    def pid(self, due: float) -> str:
        return f"schedule:{self.spec.name}:{due_key(due)}"

    def entry(self) -> dict[str, object]:
        spec = self.spec
        return {
            "o": "set",
            "v": self.serial,
            "t": spec.topic,
            "n": spec.name,
            "every": spec.every_text,
            "cron": spec.cron,
            "tz": spec.tz,
            "opts": list(spec.options),
            "b64": base64.b64encode(spec.put.payload).decode(),
            "a": self.anchor,
            "f": self.fired,
            "l": self.last_due,
            "la": self.last_at,
        }


@dataclass(frozen=True, slots=True)
class Listed:
    """A ``SCHEDULES`` line's facts."""

    topic: str
    name: str
    timing: list[str]
    next_due: float
    last_due: float | None
    fired: int
    nbytes: int
    options: tuple[str, ...]
    every: str | None = None  # the timing again, unjoined, for the HTTP API
    cron: str | None = None
    tz: str | None = None


class Schedules:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        journal: EventLog,
        logs: LogStore,
        dedup: DedupIndex,
        publish: Callable[[str, str, Meta | None], Appended],
        committed: Callable[[], asyncio.Future[None]],
        *,
        max_schedules: int,
        min_every: float,
    ) -> None:
        """``publish`` appends like any publish (the broker's internal one); ``committed``
        is a ticket for everything changed so far being durable per --fsync."""
        self.loop = loop
        self.journal = journal
        self.logs = logs
        self.dedup = dedup
        self.publish = publish
        self.committed = committed
        self.max_schedules = max_schedules
        self.min_every = min_every
        self.jobs: dict[tuple[str, str], Job] = {}
        self.fires = 0  # publishes made by firings since start (duplicates not counted)
        self.fire_failures = 0
        self._serial = 1
        self._base = 0  # the journal's size after its last snapshot
        self._compacting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- start and stop --------------------------------------------------------------

    async def open(self) -> None:
        """Replay the journal, look for firings a crash left unrecorded, arm every timer."""
        if self.journal.exists():
            self._replay(self.journal.replay_lines(_is_entry))
            if self.journal.needs_rewrite:
                self.journal.rewrite_now(self._snapshot())
            self._base = self.journal.size
        for job in list(self.jobs.values()):
            await self._find_unrecorded(job)
        for job in self.jobs.values():
            self._arm(job)
        if self.jobs:
            log.info("schedules_loaded", count=len(self.jobs))

    def close(self) -> None:
        self._closed = True
        for job in self.jobs.values():
            if job.timer is not None:
                job.timer.cancel()
                job.timer = None

    def _replay(self, entries: list[dict[str, object] | None]) -> None:
        by_serial: dict[int, Job] = {}
        for entry in entries:
            if entry is None:
                continue  # a damaged line, reported by the journal: that entry is lost
            serial = int(entry["v"])  # type: ignore[call-overload]
            self._serial = max(self._serial, serial + 1)
            op = entry["o"]
            if op == "set":
                job = _job_from(entry, serial)
                if job is None:
                    continue
                old = self.jobs.get((job.spec.topic, job.spec.name))
                if old is not None:
                    by_serial.pop(old.serial, None)
                self.jobs[(job.spec.topic, job.spec.name)] = job
                by_serial[serial] = job
            elif op == "fire":
                found = by_serial.get(serial)
                if found is not None:
                    _fired(found, float(entry["due"]), float(entry["at"]))  # type: ignore[arg-type]
            else:
                gone = by_serial.pop(serial, None)
                if gone is not None:
                    self.jobs.pop((gone.spec.topic, gone.spec.name), None)

    async def _find_unrecorded(self, job: Job) -> None:
        """A firing published but not journaled before a crash, older than the dedup window
        (so the dedup index no longer knows it): find it in the topic's log and record it.

        Only records from that due time on are read: what the crashed broker published
        after it, which is little, since a live broker records a firing within a tick.
        """
        due = next_due(job.timing, job.anchor, job.since)
        if due > time.time() - self.dedup.window:
            return  # a re-fire is caught by the dedup index
        topic, prefix = job.spec.topic, f"schedule:{job.spec.name}:"
        found: tuple[int, Record] | None = None
        try:
            offset = await self.logs.offset_at(topic, due)
            read = 0
            while read < SCAN_LIMIT:
                records = await self.logs.read(topic, offset, 4096)
                if not records:
                    break
                for record in records:
                    pid = record.meta.pid if record.meta is not None else None
                    key = pid[len(prefix) :] if pid is not None and pid.startswith(prefix) else ""
                    if key.isdigit() and int(key) >= due_key(due):
                        found = (int(key), record)
                read += len(records)
                offset = records[-1].offset + 1
        except (OSError, StorageError) as exc:
            log.error("schedule_scan_failed", topic=topic, name=job.spec.name, error=str(exc))
            return
        if found is None:
            return
        fired_key, record = found
        while due_key(due) < fired_key:  # the slot itself: its ms key is rounded
            due = next_due(job.timing, job.anchor, due)
        if due_key(due) == fired_key:
            self._record(job, due, record.ts)

    # -- the verbs ---------------------------------------------------------------------

    def add(self, spec: Schedule) -> tuple[EventLog, float]:
        """Store ``spec`` (replacing a job of that name on that topic); returns the journal
        whose write the ``OK`` waits for, and the first due time."""
        timing = Timing(spec.every, spec.cron, spec.tz)
        try:
            check(timing, self.min_every)
        except BadTiming as exc:
            raise Refused(str(exc)) from None
        key = (spec.topic, spec.name)
        old = self.jobs.get(key)
        if old is None and len(self.jobs) >= self.max_schedules:
            raise Refused("too many schedules")
        if old is not None and old.timer is not None:
            old.timer.cancel()
        job = Job(self._next_serial(), spec, timing, time.time())
        self.jobs[key] = job
        self._append(job.entry())
        self._arm(job)
        return self.journal, self.next_of(job)

    def remove(self, topic: str, name: str) -> EventLog:
        job = self.jobs.pop((topic, name), None)
        if job is None:
            raise Refused(f"no schedule {name} on {topic}")
        self._forget(job)
        return self.journal

    def drop_topic(self, topics: list[str]) -> asyncio.Future[None]:
        """``DELETE <topic>``: its jobs go with it; the future is done once that is durable."""
        for key in [k for k in self.jobs if k[0] in topics]:
            self._forget(self.jobs.pop(key))
        return self.committed()

    def listing(self, topic: str | None = None) -> list[Listed]:
        out = []
        for (t, name), job in sorted(self.jobs.items()):
            if topic is not None and t != topic:
                continue
            spec = job.spec
            out.append(
                Listed(
                    t,
                    name,
                    timing_words(spec.every_text, spec.cron, spec.tz),
                    self.next_of(job),
                    job.last_due,
                    job.fired,
                    len(spec.put.payload),
                    spec.options,
                    spec.every_text,
                    spec.cron,
                    spec.tz,
                )
            )
        return out

    def next_of(self, job: Job) -> float:
        return next_due(job.timing, job.anchor, job.since)

    def _forget(self, job: Job) -> None:
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None
        self._append({"o": "del", "v": job.serial})

    # -- firing ------------------------------------------------------------------------

    def _arm(self, job: Job) -> None:
        if self._closed:
            return
        due = self.next_of(job)
        delay = max(0.0, due - time.time())
        job.timer = self.loop.call_at(self.loop.time() + delay, self._wake, job)

    def _wake(self, job: Job) -> None:
        job.timer = None
        if self.jobs.get((job.spec.topic, job.spec.name)) is not job:
            return  # replaced or removed meanwhile
        now = time.time()
        due = latest_due(job.timing, job.anchor, job.since, now)
        if due is not None:  # None: the loop's clock ran ahead of the wall clock
            job.handled = due
            self._fire(job, due, now)
        self._arm(job)

    def _fire(self, job: Job, due: float, now: float) -> None:
        spec = job.spec
        topic, pid = spec.topic, job.pid(due)
        seen = self.dedup.lookup(topic, pid, now)
        if seen is not None:  # fired before a crash that came before its record
            log.info("schedule_refire_duplicate", topic=topic, name=spec.name, due=due)
            self._record(job, due, now)
            return
        headers = {**spec.put.headers, "schedule": spec.name, "due": ts_text(due)}
        put = dataclasses.replace(spec.put, pid=pid, headers=headers)
        meta = stored_meta(put, now)
        try:
            appended = self.publish(topic, record_text(put.payload, meta), meta)
        except (ValueError, OSError, StorageError) as exc:
            self._failed(job, due, exc)
            return
        self.dedup.remember(topic, appended)
        self.fires += 1
        task = self.loop.create_task(self._settle(job, due, appended))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, job: Job, due: float, appended: Appended) -> None:
        """Journal the firing once its message is durable; a failed write is not a firing."""
        try:
            await appended  # stored and durable, with its offset, or the topic's error
        except StorageError as exc:
            self._failed(job, due, exc)
            return
        topic = job.spec.topic
        if self._closed or self.jobs.get((topic, job.spec.name)) is not job:
            return  # stopping (recorded by the re-fire after the restart), or replaced, removed
        self._record(job, due, time.time())

    def _failed(self, job: Job, due: float, exc: Exception) -> None:
        self.fire_failures += 1
        spec = job.spec
        log.error("schedule_fire_failed", topic=spec.topic, name=spec.name, due=due, error=str(exc))

    def _record(self, job: Job, due: float, at: float) -> None:
        _fired(job, due, at)
        self._append({"o": "fire", "v": job.serial, "due": due, "at": at})

    # -- the journal -------------------------------------------------------------------

    def _next_serial(self) -> int:
        serial, self._serial = self._serial, self._serial + 1
        return serial

    def _append(self, entry: dict[str, object]) -> None:
        self.journal.append(entry)
        journal = self.journal
        if self._compacting is None and journal.size > 2 * self._base + COMPACT_BYTES:
            self._compacting = self.loop.create_task(self._compact())

    async def _compact(self) -> None:
        try:
            if await self.journal.rewrite_off_loop(self._snapshot()):
                self._base = self.journal.size
        except StorageError as exc:
            log.error("schedules_compaction_failed", error=str(exc))
        finally:
            self._compacting = None

    def _snapshot(self) -> list[dict[str, object]]:
        return [job.entry() for job in self.jobs.values()]

    def __len__(self) -> int:
        return len(self.jobs)


def _fired(job: Job, due: float, at: float) -> None:
    if job.last_due is None or due > job.last_due:
        job.last_due, job.last_at = due, at
        job.handled = max(job.handled, due)
        job.fired += 1


def _job_from(entry: dict[str, object], serial: int) -> Job | None:
    """A stored job, checked as a new ``SCHEDULE`` would be (None, and a log line, if not)."""
    try:
        opts = [str(o) for o in entry["opts"]]  # type: ignore[attr-defined]
        payload = base64.b64decode(str(entry["b64"]))
        words = []
        for name in ("every", "cron", "tz"):
            value = entry.get(name)
            if value is not None:
                words.append(f'{name}="{value}"' if name != "every" else f"every={value}")
        header = ScheduleHeader(str(entry["t"]), str(entry["n"]), len(payload), (*words, *opts))
        spec = build_schedule(header, payload)
        timing = Timing(spec.every, spec.cron, spec.tz)
        check(timing, 0.0)
        job = Job(serial, spec, timing, float(entry["a"]))  # type: ignore[arg-type]
        job.fired = int(entry.get("f") or 0)  # type: ignore[call-overload]
        last = entry.get("l")
        job.last_due = float(last) if last is not None else None  # type: ignore[arg-type]
        job.last_at = float(entry.get("la") or 0.0)  # type: ignore[arg-type]
        job.handled = job.last_due or 0.0
        return job
    except (KeyError, TypeError, ValueError, ProtocolError) as exc:
        log.error("schedule_unreadable", entry=str(entry)[:200], error=str(exc))
        return None


def _is_entry(obj: dict[str, object]) -> bool:
    return obj.get("o") in OPS and isinstance(obj.get("v"), int)
