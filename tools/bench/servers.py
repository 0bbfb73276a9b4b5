"""Start the systems under test as subprocesses on temporary dirs, time restarts, stop them.

Every server listens on 127.0.0.1 only. ``Servers`` is a context manager: leaving it (also
by Ctrl-C) stops every process it started and removes its temporary directories.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from linemq.tools.bench.workloads import rss_kb

HOST: Final = "127.0.0.1"
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 30.0

BINARIES: Final = {"redis": "redis-server", "nats": "nats-server"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def ping_once(system: str, port: int, timeout: float = 1.0) -> bool:
    """One blocking PING round trip; False if the server does not answer it yet."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            if system == "linemq":
                s.sendall(b"PING\n")
                want = b"OK pong\n"
            elif system == "redis":
                s.sendall(b"PING\r\n")
                want = b"+PONG\r\n"
            else:
                s.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
                want = b"PONG\r\n"
            data = b""
            while want not in data:
                chunk = s.recv(65536)
                if not chunk or b"LOADING" in chunk:
                    return False
                data += chunk
            return True
    except OSError:
        return False


@dataclass(slots=True)
class Server:
    system: str
    data_dir: Path
    log_path: Path
    extra_args: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    recovery_ms: float | None = None
    started_at: float = 0.0
    cpus: set[int] | None = None
    wrapper: list[str] = field(default_factory=list)
    """Run the server under this command (valgrind, say): its argv goes after it."""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_mb(self) -> float:
        return rss_kb(self.pid) / 1024 if self.proc is not None else 0.0

    def command(self) -> list[str]:
        d = str(self.data_dir)
        port = str(self.port)
        if self.system == "linemq":
            return [
                sys.executable, "-m", "linemq.broker", "--host", HOST, "--port", port,
                "--data-dir", d, "--log-format", "json", "--fsync", "interval",
                *self.extra_args,
            ]  # fmt: skip
        if self.system == "redis":
            return [
                "redis-server", "--bind", HOST, "--port", port, "--dir", d,
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--protected-mode", "no", "--daemonize", "no", *self.extra_args,
            ]  # fmt: skip
        return ["nats-server", "-a", HOST, "-p", port, "-js", "-sd", d, *self.extra_args]

    def start(self) -> float:
        """Spawn the server and wait until it answers PING; the seconds that took."""
        self.started_at = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.wrapper, *self.command()], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        if self.cpus:
            os.sched_setaffinity(self.proc.pid, self.cpus)
        limit = START_TIMEOUT * (10 if self.wrapper else 1)  # valgrind slows start-up 20-50x
        deadline = self.started_at + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.system} exited: {self._log_tail()}")
            if self.system == "linemq" and not self.port:
                self._read_listening()
            elif self.port and ping_once(self.system, self.port, timeout=0.5):
                return time.monotonic() - self.started_at
            time.sleep(0.002)
        raise RuntimeError(f"{self.system} did not answer PING in {limit}s")

    def _read_listening(self) -> None:
        for raw in self.log_path.read_bytes().splitlines():
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "listening":
                self.port = int(event["port"])
                ms = event.get("recovery_ms")
                self.recovery_ms = float(ms) if ms is not None else None

    def stop(self) -> None:
        """SIGTERM (each system's clean shutdown), then SIGKILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> float:
        """Stop, then start on the same data dir and port; seconds until PING answers."""
        self.stop()
        if self.system == "linemq":
            self.log_path.write_bytes(b"")
            self.extra_args = [*self.extra_args, "--port", str(self.port)]
            port, self.port = self.port, 0
            took = self.start()
            assert self.port == port
            return took
        return self.start()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


@dataclass(slots=True)
class Servers:
    """Owns the temporary root, every server started in it, and their cleanup."""

    keep: bool = False
    cpus: set[int] | None = None
    wrapper: list[str] = field(default_factory=list)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="linemq-bench-")))
    started: list[Server] = field(default_factory=list)

    def start(self, system: str, extra_args: list[str]) -> Server:
        """A fresh server with its own data dir and log (``redis``, ``redis-2``, ...)."""
        n = 1 + sum(1 for s in self.started if s.system == system)
        name = system if n == 1 else f"{system}-{n}"
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        port = 0 if system == "linemq" else free_port()
        server = Server(system, data_dir, self.root / f"{name}.log", list(extra_args), port)
        server.cpus = self.cpus
        server.wrapper = self.wrapper
        self.started.append(server)
        server.start()
        return server

    def __enter__(self) -> Servers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in self.started:
            try:
                server.stop()
            except BaseException:
                if server.proc is not None and server.proc.poll() is None:
                    server.proc.kill()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def available(system: str) -> bool:
    return system == "linemq" or shutil.which(BINARIES[system]) is not None


def raise_fd_limit(want: int) -> int:
    """Raise RLIMIT_NOFILE towards ``want`` (children inherit it); the soft limit after."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks clean up."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def pin_split() -> tuple[set[int], set[int]]:
    """CPU 0 for the server, the rest for the load generator (needs 2+ CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise ValueError("--pin needs at least 2 CPUs")
    return {cpus[0]}, set(cpus[1:])


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        ram = f"{mem_kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        ram = "unknown"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": sys.version.split()[0],
    }
