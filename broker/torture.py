"""Crash torture: kill -9 a real broker again and again while clients publish and consume.

Each cycle starts ``python -m broker`` on the same data directory, checks what it
recovered against what the clients were promised, runs pipelined publishers and a
consumer group for a random while, and kills the broker with SIGKILL. Some cycles
then damage the files the way a crash or a bad disk would (a torn record at the
tail of the last segment, junk after a group journal) before the next start-up
has to repair them. A last phase without kills drains the group so that every
stored message is shown to have been delivered. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import click

TOPIC: Final = "torture"
GROUP: Final = "workers"
HOST: Final = "127.0.0.1"
HISTORY_MAX: Final = 100_000
WINDOW: Final = 200  # unanswered PUBs per publisher connection
STREAM_LIMIT: Final = 1 << 22
SUFFIXES: Final = ("", " hello  world", " ünïcödé ☃", " trailing ", "  lead", " a\tb")


@dataclass(frozen=True, slots=True)
class TortureOptions:
    cycles: int = 20
    conns: int = 4
    consumers: int = 2
    seed: int = 0
    kill_after: tuple[float, float] = (0.3, 1.5)
    corrupt_every: int = 3
    max_messages: int = 90_000
    segment_bytes: int = 256 * 1024
    max_inflight: int = 50
    ack_timeout: float = 1.0
    fsync: str = "interval"
    drain_timeout: float = 30.0
    time_limit: float = 600.0


@dataclass(slots=True)
class CycleResult:
    cycle: int  # 0 is the final drain
    published: int = 0
    acked: int = 0
    stored: int = 0
    corrupted: str = ""
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(slots=True)
class TortureReport:
    seed: int
    workdir: Path
    cycles: list[CycleResult] = field(default_factory=list)
    drained: bool = False
    published: int = 0
    acked: int = 0
    stored: int = 0

    @property
    def violations(self) -> list[str]:
        return [f"cycle {c.cycle or 'drain'}: {v}" for c in self.cycles for v in c.violations]

    @property
    def ok(self) -> bool:
        return self.drained and not self.violations


@dataclass(slots=True)
class Ledger:
    """What the clients were told, across every incarnation of the broker."""

    sent: set[str] = field(default_factory=set)
    confirmed: set[str] = field(default_factory=set)
    acked: dict[str, int] = field(default_factory=dict)  # id -> incarnation of its OK
    ack_sent: set[str] = field(default_factory=set)
    known: dict[int, tuple[str, str]] = field(default_factory=dict)  # offset -> (id, text)
    incarnation: int = 0


class BrokerChild:
    """``python -m broker`` with its JSON log in a file; one per incarnation."""

    def __init__(self, data_dir: Path, log_dir: Path, args: list[str]) -> None:
        self.data_dir, self.log_dir, self.args = data_dir, log_dir, args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / "none.log"
        self.port = 0
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f"broker-{self.starts:03d}.log"
        cmd = [sys.executable, "-m", "broker", "--host", HOST, "--port", "0"]
        cmd += ["--data-dir", str(self.data_dir), "--log-format", "json", *self.args]
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == "listening":
                    self.port = int(event["port"])
                    return
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.02)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"broker did not start:\n{tail}")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log_path.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(raw)
                if isinstance(event, dict):
                    out.append(event)
        return out

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.stop()

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()


# -- clients -------------------------------------------------------------------------


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port, limit=STREAM_LIMIT)
    if await reader.readline() != b"OK connected\n":
        raise ConnectionError("no banner")
    return reader, writer


async def _request(port: int, line: str, end: str) -> list[str]:
    """One command on a fresh connection; the reply lines up to ``end`` (excluded)."""
    reader, writer = await _connect(port)
    try:
        writer.write(line.encode() + b"\n")
        out: list[str] = []
        while True:
            raw = await reader.readline()
            if not raw.endswith(b"\n"):
                raise ConnectionError(f"connection closed during {line!r}")
            text = raw[:-1].decode()
            if text == end:
                return out
            out.append(text)
    finally:
        writer.close()


async def publisher(
    port: int,
    ledger: Ledger,
    prefix: str,
    rng: random.Random,
    stats: CycleResult,
    pace: tuple[int, float, int],
) -> None:
    """Pipelined PUBs: at most ``quota`` of them, ``rate`` a second, ``budget`` in all."""
    quota, rate, budget = pace
    reader, writer = await _connect(port)
    outstanding: deque[str] = deque()
    window = asyncio.Semaphore(WINDOW)

    async def replies() -> None:
        while (raw := await reader.readline()).endswith(b"\n"):
            if not outstanding:
                stats.violations.append(f"reply to no PUB: {raw!r}")
                return
            text = outstanding.popleft()
            window.release()
            if raw == b"OK published\n":
                ledger.confirmed.add(text)
                stats.published += 1
            else:
                stats.violations.append(f"PUB got {raw!r}")

    reading = asyncio.create_task(replies())
    try:
        seq = 0
        started = time.monotonic()
        while not reading.done() and seq < quota and len(ledger.sent) < budget:
            ahead = seq / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            for _ in range(min(rng.randint(1, 40), quota - seq)):
                await window.acquire()
                seq += 1
                text = f"{prefix}n{seq}{rng.choice(SUFFIXES)}"
                if rng.random() < 0.01:
                    text += " " + "x" * rng.randint(100, 3000)
                ledger.sent.add(text)
                outstanding.append(text)
                writer.write(f"PUB {TOPIC} {text}\n".encode())
            await writer.drain()
        await reading
    finally:
        reading.cancel()
        writer.close()


async def consumer(port: int, ledger: Ledger, stats: CycleResult) -> None:
    reader, writer = await _connect(port)
    try:
        writer.write(f"SUB {TOPIC} {GROUP}\n".encode())
        first = await reader.readline()
        if first != f"OK subscribed {TOPIC} in group {GROUP}\n".encode():
            stats.violations.append(f"SUB got {first!r}")
            return
        expect: deque[str] = deque()  # ids of ACKs sent, in order
        mine: set[str] = set()
        while (raw := await reader.readline()).endswith(b"\n"):
            line = raw[:-1].decode()
            if line.startswith("MSG "):
                _msg, _topic, id_, offset, _ts, text = line.split(" ", 5)
                _check_delivery(ledger, stats, id_, int(offset), text, id_ in mine)
                ledger.ack_sent.add(id_)
                expect.append(id_)
                writer.write(f"ACK {id_}\n".encode())
                continue
            if not expect:
                stats.violations.append(f"consumer got {line[:200]!r} (no command pending)")
                return
            id_ = expect.popleft()
            if line == "OK ack_received":
                ledger.acked[id_] = ledger.incarnation
                mine.add(id_)
                stats.acked += 1
            elif not line.startswith(f"ERR message {id_} not found"):
                stats.violations.append(f"ACK {id_} got {line!r}")
    finally:
        writer.close()


def _check_delivery(
    ledger: Ledger, stats: CycleResult, id_: str, offset: int, text: str, acked_here: bool
) -> None:
    acked_in = ledger.acked.get(id_)
    if acked_here or (acked_in is not None and acked_in < ledger.incarnation):
        stats.violations.append(f"{id_} (offset {offset}) redelivered after OK ack_received")
    if text not in ledger.sent:
        stats.violations.append(f"MSG offset {offset} carries text never published: {text!r}")
    known = ledger.known.get(offset)
    if known is not None and known != (id_, text):
        stats.violations.append(f"MSG offset {offset} is {id_} {text!r}, stored as {known}")


# -- checks --------------------------------------------------------------------------


async def check_store(port: int, ledger: Ledger, stats: CycleResult) -> list[str]:
    """HISTORY against the ledger; returns the stored ids in offset order."""
    lines = await _request(port, f"HISTORY {TOPIC} {HISTORY_MAX}", "OK history end")
    v = stats.violations
    ids: list[str] = []
    texts: set[str] = set()
    for line in lines:
        parts = line.split(" ", 5)
        try:
            kind, topic, id_, offset_s, ts_s, text = parts
            offset = int(offset_s)
            float(ts_s)
        except ValueError:
            v.append(f"unparsable HISTORY line {line[:200]!r}")
            continue
        if kind != "HISTORY" or topic != TOPIC or not id_.startswith("msg_"):
            v.append(f"malformed HISTORY line {line[:200]!r}")
        if offset != len(ids) + 1:
            v.append(f"offset {offset} where {len(ids) + 1} was expected (gap or repeat)")
        if text not in ledger.sent:
            v.append(f"offset {offset} holds text never published: {text[:200]!r}")
        if text in texts:
            v.append(f"text stored twice: {text[:200]!r}")
        known = ledger.known.get(offset)
        if known is not None and known != (id_, text):
            v.append(f"offset {offset} changed from {known} to {(id_, text[:200])}")
        ledger.known[offset] = (id_, text)
        texts.add(text)
        ids.append(id_)
    lost = ledger.confirmed - texts
    if lost:
        v.append(f"{len(lost)} confirmed publishes missing, e.g. {sorted(lost)[:3]}")
    if len(ids) < len(ledger.known):
        v.append(f"log shrank from {len(ledger.known)} to {len(ids)} records")
    stats.stored = len(ids)
    return ids


def check_start_log(child: BrokerChild, corrupted: dict[str, int], stats: CycleResult) -> None:
    """The start-up after damage must say what it dropped; nothing may log an error."""
    events = child.events()
    wanted = {"segment": "segment_truncated", "journal": "journal_truncated"}
    for what, size in corrupted.items():
        dropped = [
            int(e.get("bytes_dropped", 0))
            for e in events
            if e.get("event") == wanted[what] and e.get("level") == "warning"
        ]
        if not any(d >= size for d in dropped):
            stats.violations.append(f"{size} junk bytes in the {what} but no {wanted[what]} logged")
    for e in events:
        if e.get("level") in ("error", "critical") or "exception" in e:
            stats.violations.append(f"broker logged {json.dumps(e)[:300]}")


# -- corruption ----------------------------------------------------------------------


def corrupt(data_dir: Path, rng: random.Random) -> dict[str, int]:
    """Append what a torn write or a bad disk leaves; returns {file kind: junk bytes}."""
    done: dict[str, int] = {}
    topic_dir = data_dir / "topics" / TOPIC
    segments = sorted(topic_dir.glob("[0-9]" * 20 + ".log")) if topic_dir.is_dir() else []
    if segments:
        record = json.dumps({"id": "msg_1_deadbeef", "offset": 10**9, "ts": 1.5, "msg": "torn"})
        junk = rng.choice(
            [
                record[: rng.randint(1, len(record) - 1)].encode(),
                b"\x00" * rng.randint(1, 4096),
                b"garbage\n" + record[:20].encode(),
                rng.randbytes(rng.randint(1, 2048)).replace(b"}", b"~"),
            ]
        )
        with open(segments[-1], "ab") as f:
            f.write(junk)
        done["segment"] = len(junk)
    journal = data_dir / "groups" / TOPIC / f"{GROUP}.journal"
    if journal.exists():
        junk = rng.choice([b'{"e":"a","o":', b"\xff\xfe junk\n{", b"not json\n"])
        with open(journal, "ab") as f:
            f.write(junk)
        done["journal"] = len(junk)
    return done


# -- the run -------------------------------------------------------------------------


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(
            r, asyncio.CancelledError | ConnectionError | OSError
        ):
            raise r


async def run_cycle(
    child: BrokerChild, ledger: Ledger, opts: TortureOptions, rng: random.Random, n: int
) -> tuple[CycleResult, dict[str, int]]:
    stats = CycleResult(n)
    consumers = [asyncio.create_task(consumer(child.port, ledger, stats))]
    consumers += [
        asyncio.create_task(consumer(child.port, ledger, stats)) for _ in range(opts.consumers - 1)
    ]
    # The group must exist (durably) before the first publish, or it would start after it.
    await _request(child.port, "PING", "OK pong")
    quota = max(1, opts.max_messages // opts.cycles // opts.conns)
    pace = (quota, quota / opts.kill_after[1], opts.max_messages)
    publishers = [
        asyncio.create_task(publisher(child.port, ledger, f"c{n}p{i}", rng, stats, pace))
        for i in range(opts.conns)
    ]
    await asyncio.sleep(rng.uniform(*opts.kill_after))
    assert child.proc is not None
    if child.proc.poll() is not None:
        stats.violations.append(f"broker exited by itself with {child.proc.returncode}")
    child.kill9()
    await _cancel(publishers + consumers)
    damage = {}
    if opts.corrupt_every and n % opts.corrupt_every == 0:
        damage = corrupt(child.data_dir, rng)
    stats.corrupted = "+".join(damage)
    return stats, damage


async def drain(
    child: BrokerChild, ledger: Ledger, stored: list[str], opts: TortureOptions
) -> CycleResult:
    stats = CycleResult(0)
    tasks = [
        asyncio.create_task(consumer(child.port, ledger, stats)) for _ in range(opts.consumers)
    ]
    deadline = time.monotonic() + opts.drain_timeout
    fields: dict[str, int] = {}
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            lines = await _request(child.port, f"GROUPS {TOPIC}", "OK groups end")
            mine = [ln for ln in lines if ln.split(" ")[2:3] == [GROUP]]
            if not mine:
                stats.violations.append(f"group {GROUP} missing from GROUPS: {lines}")
                break
            fields = {k: int(v) for k, v in (p.split("=") for p in mine[0].split(" ")[3:])}
            if fields["lag"] == 0:
                break
        else:
            stats.violations.append(f"group not drained in {opts.drain_timeout}s: {fields}")
    finally:
        await _cancel(tasks)
    if fields.get("dead", 0) or fields.get("next_offset") != len(stored) + 1:
        stats.violations.append(f"group ended with {fields}, {len(stored)} stored")
    never = [i for i in stored if i not in ledger.acked and i not in ledger.ack_sent]
    if never:
        stats.violations.append(f"{len(never)} stored messages never delivered, e.g. {never[:3]}")
    return stats


async def _torture(
    child: BrokerChild,
    opts: TortureOptions,
    report: TortureReport,
    on_cycle: Callable[[CycleResult], None],
) -> None:
    rng = random.Random(opts.seed)
    ledger = Ledger()
    damage: dict[str, int] = {}
    stopped = time.monotonic() + opts.time_limit
    for n in range(1, opts.cycles + 2):
        final = n > opts.cycles or time.monotonic() > stopped
        ledger.incarnation += 1
        await child.start()
        check = CycleResult(n)
        check_start_log(child, damage, check)
        stored = await check_store(child.port, ledger, check)
        if final:
            result = await drain(child, ledger, stored, opts)
            result.violations[:0] = check.violations
            report.drained = result.ok
            result.stored = len(stored)
            child.stop()
        else:
            result, damage = await run_cycle(child, ledger, opts, rng, n)
            result.violations[:0] = check.violations
            result.stored = check.stored
        report.cycles.append(result)
        report.published, report.acked = len(ledger.confirmed), len(ledger.acked)
        report.stored = len(stored)
        on_cycle(result)
        if final:
            return


def run_torture(
    data_dir: Path | None = None,
    *,
    keep: bool = False,
    on_cycle: Callable[[CycleResult], None] = lambda _: None,
    **options: Any,
) -> TortureReport:
    """Run the torture; never leaves a broker process behind, even on Ctrl-C."""
    opts = TortureOptions(**options)
    root = Path(tempfile.mkdtemp(prefix="linemq-torture-"))
    data = data_dir if data_dir is not None else root / "data"
    (root / "logs").mkdir()
    args = ["--fsync", opts.fsync, "--segment-bytes", str(opts.segment_bytes)]
    args += ["--max-inflight", str(opts.max_inflight), "--ack-timeout", str(opts.ack_timeout)]
    args += ["--max-retries", "1000000", "--heartbeat-timeout", "3600"]
    args += ["--retry-backoff-base", "0.05", "--retry-backoff-max", "0.5"]
    child = BrokerChild(data, root / "logs", args)
    report = TortureReport(opts.seed, root)
    try:
        asyncio.run(_torture(child, opts, report, on_cycle))
    finally:
        child.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return report


# -- the command ---------------------------------------------------------------------


def _print_cycle(total: int) -> Callable[[CycleResult], None]:
    def show(c: CycleResult) -> None:
        name = "drain" if c.cycle == 0 else f"cycle {c.cycle:>3}/{total}"
        damage = f"  corrupted {c.corrupted}" if c.corrupted else ""
        verdict = "ok" if c.ok else f"{len(c.violations)} VIOLATIONS"
        click.echo(
            f"{name}: published {c.published:>6}  acked {c.acked:>6}  "
            f"stored {c.stored:>6}{damage}  {verdict}"
        )
        for v in c.violations[:20]:
            click.echo(f"    {v}")

    return show


@click.command()
@click.option("--cycles", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--conns",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Publisher connections.",
)
@click.option(
    "--consumers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Members of the consumer group.",
)
@click.option("--seed", type=int, default=None, help="Random seed (default: random, printed).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Broker data directory (default: a temporary one).",
)
@click.option("--keep", is_flag=True, help="Keep the temporary directory and broker logs.")
@click.option(
    "--kill-after",
    type=(float, float),
    default=(0.3, 1.5),
    show_default=True,
    help="Seconds between a start and its kill -9: MIN MAX.",
)
@click.option(
    "--corrupt-every",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Damage the files after every Nth kill (0: never).",
)
@click.option(
    "--fsync",
    type=click.Choice(["always", "interval", "never"]),
    default="interval",
    show_default=True,
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Seconds after which no new cycle starts.",
)
def torture(seed: int | None, data_dir: Path | None, keep: bool, **options: Any) -> None:
    """kill -9 a broker repeatedly under load and check every durability promise."""
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 32)
    lo, hi = options["kill_after"]
    if not 0 < lo <= hi:
        raise click.BadParameter("need 0 < MIN <= MAX", param_hint="--kill-after")
    click.echo(f"linemq torture: seed {seed}, {options['cycles']} cycles")
    # SIGTERM cleans up like Ctrl-C: the broker child is killed, temporary files removed.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        report = run_torture(
            data_dir, keep=keep, seed=seed, on_cycle=_print_cycle(options["cycles"]), **options
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    verdict = "PASS" if report.ok else "FAIL"
    click.echo(
        f"{verdict}: {len(report.cycles) - 1} cycles, {report.published} publishes confirmed, "
        f"{report.stored} stored, {report.acked} acks confirmed, "
        f"{len(report.violations)} violations (seed {seed})"
    )
    if keep:
        click.echo(f"data and broker logs kept in {report.workdir}")
    if not report.ok:
        sys.exit(1)
