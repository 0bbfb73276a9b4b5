"""linemq RSS per in-flight (delivered, unacknowledged) group message.

    python benchmarks/inflight_rss.py [--inflight 10000] [--members 1]

Publishes N messages to a topic whose group already exists (so they wait in the log),
measures RSS, then lets members with ``--max-inflight`` N/members take every message
without acking, and measures RSS again. The difference over N is the cost of an
in-flight message, plus what delivering N messages leaves behind in the allocator
(records read from disk, output buffers). A second broker does the same with members
that ack everything: the difference between the two isolates what holding costs.
The publishes are done first so their own cost is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from linemq.tools.bench.linemq_driver import LinemqDriver
from linemq.tools.bench.runner import Progress, run_phase
from linemq.tools.bench.servers import HOST, Server, Servers, terminate_on_sigterm
from linemq.tools.bench.workloads import Job


async def hold(port: int, members: int, total: int, ack: bool = False) -> list[object]:
    """Members that read MSG lines and never ack (or ack each); returned open."""
    driver = LinemqDriver()
    conns = [await driver.connect(HOST, port) for _ in range(members)]
    for c in conns:
        c.writer.write(b"SUB inflight g\n")
    got = 0
    partial = {id(c): b"" for c in conns}  # a read may end inside a line
    deadline = time.monotonic() + 120
    while got < total and time.monotonic() < deadline:
        for c in conns:
            try:
                data = await asyncio.wait_for(c.read(), 0.05)
            except TimeoutError:
                continue
            *lines, partial[id(c)] = (partial[id(c)] + data).split(b"\n")
            msgs = [line for line in lines if line[:4] == b"MSG "]
            got += len(msgs)
            if ack:
                c.writer.write(b"".join(b"ACK %s\n" % m.split(b" ", 3)[2] for m in msgs))
    if got < total:
        raise RuntimeError(f"only {got} of {total} delivered")
    return list(conns)


async def measure(broker: Server, members: int, total: int, ack: bool) -> float:
    """RSS once ``members`` hold (or have acked) all ``total`` messages."""
    conns = await hold(broker.port, members, total, ack)
    await asyncio.sleep(0.5)
    rss = broker.rss_mb()
    del conns
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inflight", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    terminate_on_sigterm()
    per_member = -(-args.inflight // args.members)
    broker_args = ["--max-inflight", str(per_member), "--ack-timeout", "600"]
    results = {}
    for ack in (False, True):
        with Servers() as servers:
            broker = servers.start("linemq", broker_args)
            asyncio.run(LinemqDriver().prepare(HOST, broker.port, "inflight", "g", args.members))
            job = Job("pub", "linemq", HOST, broker.port, "inflight", args.inflight, 256, args.size)
            run_phase(
                "publish", [job], procs=1, timeout=120, total=args.inflight, progress=Progress()
            )
            time.sleep(0.5)
            before = broker.rss_mb()

            results[ack] = (before, asyncio.run(measure(broker, args.members, args.inflight, ack)))
    (before, held), (_, acked) = results[False], results[True]
    per_10k = (held - before) / args.inflight * 10_000
    holding = (held - acked) / args.inflight * 10_000
    print(f"RSS before delivery {before:.1f} MiB, with {args.inflight:,} in flight {held:.1f} MiB")
    print(f"=> {per_10k:.2f} MiB per 10,000 in-flight messages (delivering them included)")
    print(f"RSS after delivering and acking all {args.inflight:,} instead: {acked:.1f} MiB")
    print(f"=> {holding:.2f} MiB per 10,000 for holding them (held minus acked)")
    print(json.dumps({"before_mb": before, "after_mb": held, "acked_mb": acked,
                      "mb_per_10k": per_10k, "holding_mb_per_10k": holding}))  # fmt: skip


if __name__ == "__main__":
    main()
