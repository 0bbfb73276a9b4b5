"""Where the broker spends its time under pipelined publish load: a py-spy top 10.

    pip install py-spy
    python benchmarks/profile_publish.py [--count 1500000] [--conns 4] [--window 256]

Starts linemq, attaches ``py-spy record --format raw`` to it while ``--conns`` connections
publish ``--count`` messages with ``--window`` in flight each, then folds the sampled
stacks into two top-10 lists: self time (the frame on top of the stack) and total time
(the frame anywhere on the stack). The raw profile is kept with ``--out FILE``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from linemq.tools.bench.runner import Progress, run_phase
from linemq.tools.bench.servers import HOST, Servers, terminate_on_sigterm
from linemq.tools.bench.workloads import Job


def _function(frame: str) -> str:
    """``f (path.py:123)`` -> ``f (path.py)``: one row per function, not per line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def fold(raw: str) -> tuple[Counter[str], Counter[str], int]:
    """Raw py-spy lines are ``frame;frame;...;leaf count``; (self, total, samples)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_function(f.strip()) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    return own, total, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_500_000)
    parser.add_argument("--conns", type=int, default=4)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    terminate_on_sigterm()
    raw_path = Path(tempfile.mkstemp(prefix="linemq-profile-", suffix=".txt")[1])
    with Servers() as servers:
        broker = servers.start("linemq", [])
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(broker.pid), "--rate", "250", "--format", "raw",
             "--output", str(raw_path), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            time.sleep(1.0)
            share = args.count // args.conns
            jobs = [
                Job("pub", "linemq", HOST, broker.port, "profile", share, args.window, args.size)
                for _ in range(args.conns)
            ]
            phase = run_phase("publish", jobs, procs=1, timeout=300, total=share * args.conns,
                              progress=Progress())  # fmt: skip
            rate = sum(r.count for r in phase.results) / phase.elapsed
        finally:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
    raw = raw_path.read_text()
    own, total, samples = fold(raw)
    if args.out is not None:
        shutil.copy(raw_path, args.out)
    raw_path.unlink()
    if not samples:
        sys.exit("py-spy recorded no samples (needs ptrace permission)")
    print(f"publish {rate:,.0f} msg/s while profiled; {samples:,} samples of the broker")
    # Frames on nearly every stack (runpy, click, the event loop) say nothing: leave them out.
    inner = Counter({f: n for f, n in total.items() if n < 0.9 * samples})
    for title, table in (("self", own), ("total (outer frames left out)", inner)):
        print(f"\ntop 10 by {title} time:")
        for frame, n in table.most_common(10):
            print(f"  {100 * n / samples:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
