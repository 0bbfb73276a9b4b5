"""Python bytecodes per window-1 request, by function: where ``request_cpu.py``'s count goes.

    python benchmarks/request_opcodes.py [--request PUB|PING] [--requests 500] [--top 25]

An in-process broker on a temporary dir; a client thread with a blocking socket sends
window-1 requests and waits for each reply. After 300 requests to warm up, the loop thread
traces every bytecode (``sys.settrace`` with ``f_trace_opcodes``) for ``--requests`` more,
and the counts are printed per request, by function, with the share that ran between a
read and the call that writes its reply (``reply_now`` or ``flush``): the broker's part of a
window-1 round trip; the rest runs after the reply has left. Tracing slows the broker a hundredfold,
so this says where the interpreter's work is, not how long it takes; the count of bytecodes
is as repeatable as ``request_cpu.py --instructions``'s and finer grained. Code in C (uvloop,
orjson, the bytes methods) is not counted, only the calls into it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import uvloop

from linemq.broker.config import Config
from linemq.broker.server.app import Broker

WARMUP = 300
REQUESTS = {"PUB": b"PUB t " + b"x" * 100 + b"\n", "PING": b"PING\n"}

READ = "connection.py:Connection.data_received"
REPLY = frozenset({"connection.py:Connection.reply_now", "connection.py:Connection.flush"})

Tracer = Callable[[FrameType, str, Any], Any]


class Counts:
    """Bytecodes by function, and how many of them ran before the reply was written."""

    def __init__(self) -> None:
        self.by_function: Counter[str] = Counter()
        self.before_reply = 0
        self.replied = True

    def tracer(self) -> Tracer:
        """A ``sys.settrace`` hook that counts each traced frame's bytecodes under its function."""

        def on_call(frame: FrameType, event: str, arg: Any) -> Tracer:
            frame.f_trace_opcodes = True
            code = frame.f_code
            name = f"{Path(code.co_filename).name}:{code.co_qualname}"
            if name == READ:
                self.replied = False
            elif name in REPLY:
                self.replied = True

            def on_event(frame: FrameType, event: str, arg: Any) -> Tracer:
                if event == "opcode":
                    self.by_function[name] += 1
                    if not self.replied:
                        self.before_reply += 1
                return on_event

            return on_event

        return on_call


def on_loop(loop: asyncio.AbstractEventLoop, action: Callable[[], object]) -> None:
    """Run ``action`` on the loop's thread and wait for it: settrace is per thread."""
    done = threading.Event()

    def run() -> None:
        action()
        done.set()

    loop.call_soon_threadsafe(run)
    done.wait()


def drive(
    port: int, request: bytes, n: int, loop: asyncio.AbstractEventLoop, tracer: Tracer
) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s, s.makefile("rb") as replies:
        replies.readline()  # the banner
        for i in range(WARMUP + n):
            if i == WARMUP:
                on_loop(loop, lambda: sys.settrace(tracer))
            s.sendall(request)
            if not replies.readline():
                raise ConnectionError("the broker closed the connection")
        on_loop(loop, lambda: sys.settrace(None))


async def count(request: bytes, n: int) -> Counts:
    data_dir = Path(tempfile.mkdtemp(prefix="linemq-opcodes-"))
    broker = Broker(Config(port=0, data_dir=data_dir, fsync="interval"))
    counts = Counts()
    try:
        await broker.start()
        loop = asyncio.get_running_loop()
        args = (broker.port, request, n, loop, counts.tracer())
        await asyncio.to_thread(drive, *args)
    finally:
        await broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--request", choices=sorted(REQUESTS), default="PUB")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    counts = uvloop.run(count(REQUESTS[args.request], args.requests))
    per_request = {name: c / args.requests for name, c in counts.by_function.most_common()}
    total = sum(per_request.values())
    before = counts.before_reply / args.requests
    print(f"{args.request}: {total:,.0f} bytecodes per request, {before:,.0f} before the reply")
    for name, c in list(per_request.items())[: args.top]:
        if c >= 0.5:
            print(f"{c:8.1f}  {name}")
    report = {"request": args.request, "bytecodes": total, "before_reply": before}
    print(json.dumps({**report, "by_function": per_request}))


if __name__ == "__main__":
    main()
