"""The load and the checks: pipelined publishers, a consumer group, what recovery kept."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from linemq.tools.torture.model import (
    GROUP,
    HISTORY_MAX,
    HOST,
    STREAM_LIMIT,
    SUFFIXES,
    TOPIC,
    WINDOW,
    BrokerChild,
    CycleResult,
    Ledger,
)


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port, limit=STREAM_LIMIT)
    if await reader.readline() != b"OK connected\n":
        raise ConnectionError("no banner")
    return reader, writer


async def request(port: int, line: str, end: str) -> list[str]:
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
    redelivered = acked_here or (acked_in is not None and acked_in < ledger.incarnation)
    if redelivered and not (acked_in is not None and acked_in <= ledger.journal_damaged):
        stats.violations.append(f"{id_} (offset {offset}) redelivered after OK ack_received")
    if text not in ledger.sent:
        stats.violations.append(f"MSG offset {offset} carries text never published: {text!r}")
    if text in ledger.destroyed:
        stats.violations.append(f"MSG offset {offset} serves a destroyed record: {text!r}")
    ledger.delivered.add(offset)
    known = ledger.known.get(offset)
    if known is not None and known != (id_, text):
        stats.violations.append(f"MSG offset {offset} is {id_} {text!r}, stored as {known}")


# -- checks --------------------------------------------------------------------------

# Error lines that report damage the run did (disk mode): expected, and checked by disk.py.
DAMAGE_REPORTS = frozenset({"storage_damage", "group_journal_damaged"})


async def check_store(
    port: int,
    ledger: Ledger,
    stats: CycleResult,
    excused: Callable[[], set[int]] = set,
) -> list[tuple[int, str]]:
    """HISTORY against the ledger; returns the stored (offset, id) pairs in offset order.

    Offsets follow each other without a gap, except in disk mode (``ledger.destroyed``
    set): there a gap must be damage the run did or the broker reported (``excused``).
    """
    lines = await request(port, f"HISTORY {TOPIC} {HISTORY_MAX}", "OK history end")
    v = stats.violations
    stored: list[tuple[int, str]] = []
    texts: set[str] = set()
    last = 0
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
        if offset <= last:
            v.append(f"offset {offset} after {last} (repeat or out of order)")
        elif offset != last + 1 and not ledger.destroyed:
            v.append(f"offset {offset} where {last + 1} was expected (gap)")
        last = max(last, offset)
        if text not in ledger.sent:
            v.append(f"offset {offset} holds text never published: {text[:200]!r}")
        if text in ledger.destroyed:
            v.append(f"offset {offset} serves a destroyed record: {text[:200]!r}")
        if text in texts:
            v.append(f"text stored twice: {text[:200]!r}")
        known = ledger.known.get(offset)
        if known is not None and known != (id_, text):
            v.append(f"offset {offset} changed from {known} to {(id_, text[:200])}")
        ledger.known[offset] = (id_, text)
        texts.add(text)
        stored.append((offset, id_))
    reported = excused()  # read after HISTORY: damage is reported as reads meet it
    gone = {t for o, (_, t) in ledger.known.items() if o in reported}
    lost = ledger.confirmed - texts - ledger.destroyed - gone
    if lost:
        v.append(f"{len(lost)} confirmed publishes missing, e.g. {sorted(lost)[:3]}")
    if not ledger.destroyed and len(stored) < len(ledger.known):
        v.append(f"log shrank from {len(ledger.known)} to {len(stored)} records")
    stats.stored = len(stored)
    return stored


def check_start_log(
    child: BrokerChild, corrupted: dict[str, int], stats: CycleResult, *, disk: bool = False
) -> None:
    """The start-up after damage must say what it dropped; nothing may log an error
    (in disk mode but the broker's reports of the damage the run did)."""
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
        if disk and e.get("event") in DAMAGE_REPORTS and "exception" not in e:
            continue
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
