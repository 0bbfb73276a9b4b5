"""Server CPU per window-1 request: where a round trip's time goes, beyond the loopback.

    python benchmarks/request_cpu.py [--requests 20000] [--rounds 3]

For linemq (``PUB``, ``PING``), Redis if installed (``XADD``, ``PING``), a bare uvloop
protocol that answers every read with one line (``uvloop echo``), and the least a Python
server must do for a durable ``PUB`` (``python floor``: parse, orjson, a write to a file, the
reply; no index, cache, metrics or fanout), one blocking client sends a request and
waits for its reply, ``--requests`` times. The server's user and system CPU (from
``/proc/<pid>/stat``) over those requests, divided by their number, say how much of a
round trip is the server's own work; system time is mostly the loopback itself and the
same for every server. Servers alternate over ``--rounds``; medians are printed, with the
share of machine time the hypervisor took meanwhile (``steal``, see broker/bench/steal.py;
``nan`` when a run is too short for /proc/stat's clock to tick).

    python benchmarks/request_cpu.py --instructions [--requests 2000]

counts instead the instructions each server runs per request, under valgrind's callgrind:
a count that the hypervisor's steal and the other core's load do not move, so two versions
of the broker compare to within 0.1% in one run each. It is the difference between a run of
a few hundred requests and one of ``--requests`` more, so start-up and shutdown cancel out.
The kernel's share (the system time above) is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from linemq.tools.bench import steal
from linemq.tools.bench.servers import HOST, Servers, available, free_port, terminate_on_sigterm

ECHO = """
import asyncio, sys, uvloop
class Echo(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(b"OK pong\\n")
async def main():
    await asyncio.get_running_loop().create_server(Echo, sys.argv[1], int(sys.argv[2]))
    await asyncio.Event().wait()
uvloop.run(main())
"""

# linemq's PUB path without the broker: what any Python broker pays for a durable publish.
FLOOR = """
import asyncio, os, sys, tempfile, time, orjson, uvloop
log = tempfile.TemporaryFile(prefix="linemq-floor-")
topics = {b"t": 0}
class Floor(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t
        t.write(b"OK connected\\n")
    def data_received(self, d):
        space = d.find(b" ", 4)
        topic = d[4:space]
        offset = topics[topic] = topics[topic] + 1
        now = time.time()
        rid = f"msg_{int(now * 1000)}_{offset:08x}"
        record = {"id": rid, "offset": offset, "ts": now, "msg": d[space + 1 : -1].decode()}
        os.write(log.fileno(), orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        self.t.write(b"OK published\\n")
async def main():
    await asyncio.get_running_loop().create_server(Floor, sys.argv[1], int(sys.argv[2]))
    await asyncio.Event().wait()
uvloop.run(main())
"""
BARE = {"echo": ECHO, "floor": FLOOR}

PAYLOAD = b"x" * 100
XADD = b"*5\r\n$4\r\nXADD\r\n$1\r\nt\r\n$1\r\n*\r\n$1\r\nm\r\n$100\r\n" + PAYLOAD + b"\r\n"


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def requester(s: socket.socket, request: bytes) -> Callable[[], None]:
    """One round trip on ``s``: send ``request``, wait for its whole reply."""
    ends = 2 if request == XADD else 1  # an XADD reply is two lines

    def one() -> None:
        s.sendall(request)
        got = s.recv(256)
        while got.count(b"\n") < ends:
            got += s.recv(256)

    return one


def connect(port: int, banner: bool) -> socket.socket:
    s = socket.create_connection((HOST, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if banner:
        s.recv(100)
    return s


def round_trips(pid: int, port: int, request: bytes, banner: bool, n: int) -> dict[str, float]:
    """``n`` requests one at a time (after a warm-up): µs of CPU and of wall time each."""
    with connect(port, banner) as s:
        one = requester(s, request)
        for _ in range(1000):
            one()
        user0, sys0 = cpu_seconds(pid)
        machine0 = steal.sample()
        start = time.perf_counter()
        for _ in range(n):
            one()
        wall = time.perf_counter() - start
        user1, sys1 = cpu_seconds(pid)
        stolen = steal.stolen_percent(machine0, steal.sample())
    return {
        "user_us": (user1 - user0) / n * 1e6,
        "sys_us": (sys1 - sys0) / n * 1e6,
        "rtt_us": wall / n * 1e6,
        "steal_pct": stolen if stolen is not None else float("nan"),
    }


WARM_REQUESTS = 300


def callgrind_total(path: Path) -> int:
    """The instruction count a callgrind output file ends with."""
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"{path}: no totals line")


def instructions(system: str, request: bytes, banner: bool, n: int, root: Path) -> float:
    """Instructions the server runs per request: a run of ``n`` requests more than another."""
    totals = []
    for count in (WARM_REQUESTS, WARM_REQUESTS + n):
        out = root / f"{system}-{len(list(root.iterdir()))}.callgrind"
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        echoes: list[subprocess.Popen[bytes]] = []
        with Servers(wrapper=wrapper) as servers:
            try:
                _, port = start(system, servers, echoes, wrapper)
                with connect(port, banner) as s:
                    one = requester(s, request)
                    for _ in range(count):
                        one()
            finally:
                for proc in echoes:  # SIGTERM: valgrind writes its counts as the process ends
                    proc.terminate()
                    proc.wait()
        totals.append(callgrind_total(out))
    return (totals[1] - totals[0]) / n


def start(
    system: str,
    servers: Servers,
    echoes: list[subprocess.Popen[bytes]],
    wrapper: list[str] | None = None,
) -> tuple[int, int]:
    """A fresh server of ``system`` (or of a script in ``BARE``): its pid and port."""
    if system not in BARE:
        server = servers.start(system, ["--max-inflight", "256"] if system == "linemq" else [])
        return server.pid, server.port
    port = free_port()
    quiet = subprocess.DEVNULL if wrapper else None  # valgrind's banner and exit report
    argv = [*(wrapper or []), sys.executable, "-c", BARE[system], HOST, str(port)]
    proc = subprocess.Popen(argv, stderr=quiet)
    echoes.append(proc)
    for _ in range(3000):  # under valgrind, start-up takes seconds
        try:
            socket.create_connection((HOST, port)).close()
            break
        except OSError:
            time.sleep(0.01)
    return proc.pid, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions under callgrind instead"
    )
    parser.add_argument("--only", help="run only the cases whose name contains this")
    args = parser.parse_args()
    terminate_on_sigterm()
    cases = [
        ("linemq PUB", "linemq", b"PUB t " + PAYLOAD + b"\n", True),
        ("linemq PING", "linemq", b"PING\n", True),
    ]
    if available("redis"):
        cases += [("redis XADD", "redis", XADD, False), ("redis PING", "redis", b"PING\r\n", False)]
    cases += [
        ("uvloop echo", "echo", b"PING\n", False),
        ("python floor", "floor", b"PUB t " + PAYLOAD + b"\n", True),
    ]
    if args.only:
        cases = [case for case in cases if args.only in case[0]]
    if args.instructions:
        count_instructions(cases, args.requests)
        return
    results: dict[str, list[dict[str, float]]] = {}
    echoes: list[subprocess.Popen[bytes]] = []
    with Servers() as servers:
        try:
            for _ in range(args.rounds):
                for name, system, request, banner in cases:
                    pid, port = start(system, servers, echoes)
                    got = round_trips(pid, port, request, banner, args.requests)
                    results.setdefault(name, []).append(got)
                    for server in servers.started:
                        server.stop()
                    for proc in echoes:
                        proc.kill()
                        proc.wait()
        finally:
            for proc in echoes:
                proc.kill()
    medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in results.items()
    }
    print(f"{'server, request':16s} {'user µs':>8s} {'sys µs':>8s} {'RTT µs':>8s} {'steal %':>8s}")
    for name, m in medians.items():
        cells = (m[k] for k in ("user_us", "sys_us", "rtt_us", "steal_pct"))
        print(f"{name:16s}" + "".join(f" {v:8.1f}" for v in cells))
    print(json.dumps({"requests": args.requests, "rounds": args.rounds, "medians": medians}))


def count_instructions(cases: list[tuple[str, str, bytes, bool]], n: int) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind (apt-get install -y valgrind)")
    os.environ["PYTHONHASHSEED"] = "0"  # the same dict layouts, run after run
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="linemq-callgrind-") as root:
        for name, system, request, banner in cases:
            counts[name] = instructions(system, request, banner, n, Path(root))
    print(f"{'server, request':16s} {'instructions':>12s}")
    for name, count in counts.items():
        print(f"{name:16s} {count:12,.0f}")
    print(json.dumps({"requests": n, "instructions": counts}))


if __name__ == "__main__":
    main()
