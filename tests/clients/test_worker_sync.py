"""``SyncClient.process``: blocking handlers in threads, stopped from a thread or by Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from linemq.clients import Terminate
from linemq.clients.sync import SyncClient, SyncMessage
from tests.conftest import BrokerFactory


async def test_blocking_handlers_run_in_threads_and_their_results_settle_messages(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_retries=0, ack_timeout=10, max_inflight=10)

    def scenario() -> None:
        running = peak = 0
        lock = threading.Lock()

        def handler(m: SyncMessage) -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            if m.text == "bad":
                raise ValueError("no such customer")
            if m.text == "poison":
                raise Terminate("unreadable")

        with SyncClient(port=broker.port) as c:
            c.publish_many("jobs", ["a", "b", "c", "bad", "poison", "d"])
            w = c.worker("jobs", "w", handler, concurrency=3, start="earliest")
            done = threading.Event()

            def stop_when_done() -> None:
                while w.stats.acked + w.stats.nacked + w.stats.terminated < 6:
                    time.sleep(0.01)
                w.stop()
                done.set()

            threading.Thread(target=stop_when_done, daemon=True).start()
            w.run()
            assert done.is_set()
            assert (w.stats.acked, w.stats.nacked, w.stats.terminated) == (4, 1, 1)
            assert peak == 3
            letters = {d.text: (d.reason, d.error) for d in c.dlq("jobs")}
            assert letters == {
                "bad": ("nacked", "ValueError: no such customer"),
                "poison": ("terminated", "unreadable"),
            }

    await asyncio.to_thread(scenario)


SCRIPT = """
import sys, time
from linemq.clients.sync import SyncClient

def handler(m):
    print("started", m.text, flush=True)
    time.sleep(0.3)
    print("finished", m.text, flush=True)

with SyncClient(port={port}) as c:
    try:
        c.process("jobs", "w", handler, concurrency=2, start="earliest")
    except KeyboardInterrupt:
        print("interrupted", c.groups("jobs")[0].acked, flush=True)
"""


async def test_ctrl_c_lets_the_running_handler_finish_and_be_acked(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    broker = await brokers.start(ack_timeout=10)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(SCRIPT.format(port=broker.port)))

    def scenario() -> list[str]:
        with SyncClient(port=broker.port) as c:
            c.publish("jobs", "report")
        proc = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, bufsize=1
        )
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip()]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        return lines + out.split("\n")

    lines = await asyncio.to_thread(scenario)
    assert lines[:3] == ["started report", "finished report", "interrupted 1"]
