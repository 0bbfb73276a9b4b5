"""Instructions a server runs per pipelined publish, counted by valgrind's callgrind.

    python benchmarks/pipelined_instructions.py [--messages 20000] [--topics 1] [--window 256]
    python benchmarks/pipelined_instructions.py --only linemq --members 1   # end to end
    python benchmarks/pipelined_instructions.py --members 1 --broker-arg=--max-inflight=256

One connection keeps ``--window`` publishes unanswered (linemq ``PUB``, Redis ``XADD``),
each to the next of ``--topics`` topics, until ``--messages`` are answered. The count is the
difference between that run and one of a few hundred publishes, so start-up and shutdown
cancel out, and neither the hypervisor's steal nor the other core's load moves it: on a
shared VM, where ``linemq bench`` figures move by 30% between runs, this is how two versions
of the broker's publish path are compared (run it from each version's checkout). The
kernel's share is not counted; the count says what the server's own code costs.

``--members N`` (linemq only) counts end to end instead: before publishing, N connections
join the group ``g`` on every topic and ``ACK`` each message they get; the run ends when
every message is acked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
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


def consume(sock: socket.socket, done: threading.Event, acked: list[int], count: int) -> None:
    """A group member: ``ACK`` every ``MSG`` line; counts the acks answered in ``acked``."""
    tail = b""
    while not done.is_set():
        data = sock.recv(1 << 16)
        if not data:
            return
        lines = (tail + data).split(b"\n")
        tail = lines.pop()
        acks = [b"ACK " + line.split(b" ", 3)[2] + b"\n" for line in lines if line[:4] == b"MSG "]
        if acks:
            sock.sendall(b"".join(acks))
        with LOCK:
            acked[0] += sum(1 for line in lines if line == b"OK ack_received")
            if acked[0] >= count:
                done.set()


LOCK = threading.Lock()


def join(port: int, topics: int, members: int) -> list[socket.socket]:
    """``members`` connections in group ``g`` of every topic, each told ``OK subscribed``."""
    names = ["t"] if topics == 1 else [f"t.{i}" for i in range(topics)]
    socks = []
    for _ in range(members):
        s = socket.create_connection((HOST, port))
        s.recv(100)  # the banner
        s.sendall(b"".join(b"SUB %s g\n" % t.encode() for t in names))
        buf = b""
        while buf.count(b"\n") < len(names):
            buf += s.recv(1 << 16)
        socks.append(s)
    return socks


def end_to_end(port: int, count: int, topics: int, window: int, members: int) -> None:
    """Publish ``count`` while ``members`` members of each topic's group ack them all."""
    socks = join(port, topics, members)
    done, acked = threading.Event(), [0]
    threads = [threading.Thread(target=consume, args=(s, done, acked, count)) for s in socks]
    for t in threads:
        t.start()
    publish(port, "linemq", count, topics, window)
    done.wait()
    for s in socks:
        s.shutdown(socket.SHUT_RDWR)
    for t in threads:
        t.join()
    for s in socks:
        s.close()


def callgrind_total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"{path}: no totals line")


def instructions(
    system: str,
    n: int,
    topics: int,
    window: int,
    root: Path,
    members: int = 0,
    args: list[str] | None = None,
) -> float:
    totals = []
    for count in (WARM, WARM + n):
        out = root / f"{system}-{len(list(root.iterdir()))}.callgrind"
        wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        with Servers(wrapper=wrapper) as servers:
            server = servers.start(system, args or [])
            try:
                if members:
                    end_to_end(server.port, count, topics, window, members)
                else:
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
    parser.add_argument("--members", type=int, default=0, help="end to end (linemq only)")
    parser.add_argument("--broker-arg", action="append", default=[], help="a `linemq serve` option")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("needs valgrind (apt-get install -y valgrind)")
    os.environ["PYTHONHASHSEED"] = "0"
    systems = [args.only] if args.only else ["linemq", "redis"]
    if args.members:
        systems = ["linemq"]
    systems = [s for s in systems if s == "linemq" or available(s)]
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="linemq-callgrind-") as root:
        for system in systems:
            counts[system] = instructions(
                system,
                args.messages,
                args.topics,
                args.window,
                Path(root),
                args.members,
                args.broker_arg if system == "linemq" else [],
            )
    for system, count in counts.items():
        what = "message end to end" if args.members else "publish"
        print(f"{system:8s} {count:10,.0f} instructions per {what}")
    print(json.dumps({**vars(args), "instructions": counts}))


if __name__ == "__main__":
    main()
