"""Instructions a server runs per pipelined publish, counted by valgrind's callgrind.

    python benchmarks/pipelined_instructions.py [--messages 20000] [--topics 1] [--window 256]

One connection keeps ``--window`` publishes unanswered (linemq ``PUB``, Redis ``XADD``),
each to the next of ``--topics`` topics, until ``--messages`` are answered. The count is the
difference between that run and one of a few hundred publishes, so start-up and shutdown
cancel out, and neither the hypervisor's steal nor the other core's load moves it: on a
shared VM, where ``linemq bench`` figures move by 30% between runs, this is how two versions
of the broker's publish path are compared (run it from each version's checkout). The
kernel's share is not counted; the count says what the server's own code costs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from linemq.tools.bench.servers import HOST, Servers, available

WARM = 500
PAYLOAD = b"x" * 100


def encode(system: str, topic: str) -> bytes:
    if system == "linemq":
        return b"PUB %s %s\n" % (topic.encode(), PAYLOAD)
    key = topic.encode()
    return b"*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$1\r\nm\r\n$%d\r\n%s\r\n" % (
        len(key),
        key,
        len(PAYLOAD),
        PAYLOAD,
    )


def publish(port: int, system: str, count: int, topics: int, window: int) -> None:
    """``count`` publishes with ``window`` in flight, round-robin over ``topics``."""
    names = ["t"] if topics == 1 else [f"t.{i}" for i in range(topics)]
    pubs = [encode(system, t) for t in names]
    per_reply = 2 if system == "redis" else 1  # an XADD reply is one line, a bulk string two
    with socket.create_connection((HOST, port)) as s:
        if system == "linemq":
            s.recv(100)  # the banner
        sent = answered = 0
        buf = b""
        while answered < count:
            room = min(window - (sent - answered), count - sent)
            if room > 0:
                s.sendall(b"".join(pubs[(sent + i) % len(pubs)] for i in range(room)))
                sent += room
            buf += s.recv(1 << 16)
            lines = buf.count(b"\n") // per_reply
            if lines:
                cut = -1
                for _ in range(lines * per_reply):
                    cut = buf.index(b"\n", cut + 1)
                buf = buf[cut + 1 :]
                answered += lines


def callgrind_total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"{path}: no totals line")


def instructions(system: str, n: int, topics: int, window: int, root: Path) -> float:
    totals = []
    for count in (WARM, WARM + n):
        out = root / f"{system}-{len(list(root.iterdir()))}.callgrind"
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        with Servers(wrapper=wrapper) as servers:
            server = servers.start(system, [])
            try:
                publish(server.port, system, count, topics, window)
            finally:
                server.stop()  # valgrind writes its counts as the process ends
        totals.append(callgrind_total(out))
    return (totals[1] - totals[0]) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--topics", type=int, default=1)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--only", choices=["linemq", "redis"], default=None)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("needs valgrind (apt-get install -y valgrind)")
    os.environ["PYTHONHASHSEED"] = "0"
    systems = [args.only] if args.only else ["linemq", "redis"]
    systems = [s for s in systems if s == "linemq" or available(s)]
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="linemq-callgrind-") as root:
        for system in systems:
            counts[system] = instructions(
                system, args.messages, args.topics, args.window, Path(root)
            )
    for system, count in counts.items():
        print(f"{system:8s} {count:10,.0f} instructions per publish")
    print(json.dumps({**vars(args), "instructions": counts}))


if __name__ == "__main__":
    main()
