"""Restart-to-serving time and RSS of linemq with 1,000,000 messages stored vs empty.

    python benchmarks/restart_1m.py [--messages 1000000] [--topics 10] [--size 100]

Starts a broker on a temporary dir, times a restart while it is empty, fills it with
pipelined publishes spread over the topics, then stops it (SIGTERM) and times the restart
on the same dir: from spawning the process until it answers PING, and the broker's own
``recovery_ms``. Prints a small table and JSON; the temporary dir is removed at the end.
"""

from __future__ import annotations

import argparse
import json

from linemq.tools.bench.runner import Progress, run_phase
from linemq.tools.bench.servers import HOST, Servers, ping_once, terminate_on_sigterm
from linemq.tools.bench.workloads import Job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--procs", type=int, default=1)
    args = parser.parse_args()
    terminate_on_sigterm()
    progress = Progress()
    out: dict[str, float] = {}
    with Servers() as servers:
        broker = servers.start("linemq", [])
        out["empty_restart_ms"] = broker.restart() * 1000
        out["empty_recovery_ms"] = broker.recovery_ms or 0.0
        out["empty_rss_mb"] = broker.rss_mb()

        per_topic = args.messages // args.topics
        jobs = [
            Job("pub", "linemq", HOST, broker.port, f"restart_{t}", per_topic, 256, args.size)
            for t in range(args.topics)
        ]
        fill = run_phase(
            "fill", jobs, procs=args.procs, timeout=600, total=per_topic * args.topics,
            progress=progress,
        )  # fmt: skip
        stored = sum(r.count for r in fill.results)
        out["stored"] = stored
        out["fill_rate"] = stored / fill.elapsed
        out["full_rss_before_restart_mb"] = broker.rss_mb()

        out["full_restart_ms"] = broker.restart() * 1000
        out["full_recovery_ms"] = broker.recovery_ms or 0.0
        out["full_rss_mb"] = broker.rss_mb()
        out["serving"] = float(ping_once("linemq", broker.port))
        out["rss_delta_mb"] = out["full_rss_mb"] - out["empty_rss_mb"]

    print(f"{'':34}{'empty':>10}{f'{stored:,} stored':>18}")
    print(f"{'restart to PING ms (spawn incl.)':34}{out['empty_restart_ms']:>10.0f}"
          f"{out['full_restart_ms']:>18.0f}")  # fmt: skip
    print(f"{'broker recovery_ms':34}{out['empty_recovery_ms']:>10.1f}"
          f"{out['full_recovery_ms']:>18.1f}")  # fmt: skip
    print(f"{'RSS after restart MiB':34}{out['empty_rss_mb']:>10.1f}{out['full_rss_mb']:>18.1f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
