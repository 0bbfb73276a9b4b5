"""What a torture run is told, what it records, and the broker child it kills."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

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
    corrupt: bool = False  # disk mode: flip bytes and cut tails between cycles (disk.py)
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
    # Disk mode: texts whose records the run destroyed, offsets the group was sent (the
    # broker's cursor keeps a trace of those), and the last incarnation whose group
    # journal was damaged (acks up to it may be lost, so redelivery is allowed).
    destroyed: set[str] = field(default_factory=set)
    delivered: set[int] = field(default_factory=set)
    journal_damaged: int = -1


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
        cmd = [sys.executable, "-m", "linemq.broker", "--host", HOST, "--port", "0"]
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
