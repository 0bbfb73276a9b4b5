"""Fixtures that start real brokers on ephemeral ports: in-process, and as a subprocess."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from linemq.broker.config import Config
from linemq.broker.ops.http import start_http
from linemq.broker.server.app import Broker

# A shell that starts the suite in the background (`pytest &`, a CI script's `cmd &`) makes
# it ignore SIGINT, and child processes inherit that: the Ctrl-C tests would then wait on
# CLIs that cannot hear Ctrl-C. Take the default back, as a foreground run has it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

FAST = {
    "ack_timeout": 0.3,
    "heartbeat_timeout": 10.0,
    "retry_backoff_base": 0.05,
    "retry_backoff_max": 0.4,
    "fsync_interval_ms": 50,
    "shutdown_grace": 0.0,  # tests that stop with messages in flight stop at once, as before
}


class BrokerFactory:
    """Starts in-process brokers on port 0 and stops them at the end of the test."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.running: list[Broker] = []

    async def start(self, **overrides: Any) -> Broker:
        options: dict[str, Any] = {"port": 0, "data_dir": self.data_dir, **FAST, **overrides}
        broker = Broker(Config(**options), http=start_http)
        await broker.start()
        self.running.append(broker)
        return broker

    async def stop(self, broker: Broker) -> None:
        self.running.remove(broker)
        await broker.stop()

    async def restart(self, broker: Broker, **overrides: Any) -> Broker:
        config = broker.config
        await self.stop(broker)
        options = {**dataclasses.asdict(config), "port": 0, **overrides}
        new = Broker(Config(**options), http=start_http)
        await new.start()
        self.running.append(new)
        return new


@pytest.fixture
async def brokers(tmp_path: Path) -> AsyncIterator[BrokerFactory]:
    factory = BrokerFactory(tmp_path / "data")
    yield factory
    for broker in list(factory.running):
        await factory.stop(broker)


@pytest.fixture
async def broker(brokers: BrokerFactory) -> Broker:
    return await brokers.start()


class BrokerProcess:
    """``python -m broker`` in a subprocess, for kill -9 and signal tests."""

    def __init__(self, data_dir: Path, args: list[str]) -> None:
        self.data_dir = data_dir
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> BrokerProcess:
        cmd = [
            sys.executable,
            "-m",
            "linemq.broker",
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
            "--log-format",
            "json",
            *self.args,
        ]
        self.log_path = self.data_dir.parent / f"broker-{id(self)}-{time.monotonic_ns()}.log"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(cmd, stderr=log_file, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == "listening":
                    self.port = int(event["port"])
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"broker did not start: {self.log_path.read_text()}")

    def events(self) -> list[dict[str, Any]]:
        """The broker's JSON log lines so far."""
        out = []
        for raw in self.log_path.read_bytes().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
        return out

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 10) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def fd_count(self) -> int:
        assert self.proc is not None
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    started: list[BrokerProcess] = []

    def start(*args: str, data_dir: Path | None = None) -> BrokerProcess:
        proc = BrokerProcess(data_dir or tmp_path / "data", list(args)).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition the broker reaches asynchronously (no fixed sleeps)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
