"""Python memory per in-flight group message, counted by tracemalloc (no allocator noise).

    python benchmarks/inflight_objects.py [--inflight 10000] [--members 1]

An in-process broker with a topic of N plain messages waiting for group ``g``;
then members take them all and ack none. tracemalloc compares what is allocated
before and after, so only what holding the messages keeps is counted (the
records themselves were already in the log's tail cache). ``inflight_rss.py``
measures the same from outside, as RSS, allocator included.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import tracemalloc
from pathlib import Path

import uvloop

from linemq.broker.config import Config
from linemq.broker.delivery.clients import GONE
from linemq.broker.server.app import Broker


async def measure(total: int, members: int, size: int) -> int:
    config = Config(
        port=0,
        data_dir=Path(tempfile.mkdtemp()),
        fsync="never",
        max_inflight=-(-total // members),
        ack_timeout=600,
    )
    broker = Broker(config)
    await broker.start()
    router = broker.router
    creator = router.client(GONE)
    await router.join(creator, "inflight", "g")  # the group exists, so messages wait for it
    router.leave(creator, "inflight", "g")
    for _ in range(total):
        broker.engine.publish_internal("inflight", "x" * size)
    await asyncio.sleep(0.05)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(members):
        await router.join(router.client(GONE), "inflight", "g")
    group = router.groups["inflight"]["g"]
    for _ in range(500):
        if group.info()["inflight"] == total:
            break
        await asyncio.sleep(0.01)
    assert group.info()["inflight"] == total, group.info()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    await broker.stop()
    for stat in after.compare_to(before, "lineno")[:5]:
        print("  ", stat)
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inflight", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=1)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    grown = uvloop.run(measure(args.inflight, args.members, args.size))
    per = grown / args.inflight
    print(f"{per:.0f} bytes per in-flight message, {per * 10_000 / 2**20:.2f} MiB per 10,000")


if __name__ == "__main__":
    main()
