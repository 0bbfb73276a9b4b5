"""Resource limits: each answers with a clear ERR, logs, and leaves the broker serving."""

from __future__ import annotations

import asyncio
import resource
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import BrokerFactory
from tests.wire import Wire


async def test_max_connections(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_connections=3)
    held = [await Wire.open(broker.port) for _ in range(3)]
    extra = await Wire.open(broker.port, banner=False)
    assert await extra.line() == "ERR too many connections"
    assert await extra.raw_line() == b""
    await held[0].close()
    while len(broker.connections) > 2:
        await asyncio.sleep(0.01)
    again = await Wire.open(broker.port)
    assert await again.cmd("PING") == "OK pong"


async def test_max_message_bytes(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_message_bytes=100)
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB t " + "x" * 100) == "OK published"
    assert await w.cmd("PUB t " + "x" * 101) == "ERR message too large (limit 100 bytes)"
    assert await w.cmd("PUB t " + "é" * 60) == "ERR message too large (limit 100 bytes)"
    assert await w.cmd("PING") == "OK pong"


async def test_max_topics_refuses_new_topics_only(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_topics=2, ack_timeout=0.05, max_retries=0)
    w = await Wire.open(broker.port)
    assert await w.cmd("PUB a 1") == "OK published"
    assert await w.cmd("SUB b g") == "OK subscribed b in group g"
    assert await w.cmd("PUB c 1") == "ERR too many topics"
    assert await w.cmd("SUB c g") == "ERR too many topics"
    assert await w.cmd("PUB a 2") == "OK published"
    assert not (broker.config.data_dir / "topics" / "c").exists()
    # A dead-letter topic counts too: past the limit the letter is not written and the
    # message waits in its group (tried again every --retry-backoff-max), never lost, and
    # no connection is dropped for it.
    assert await w.cmd("PUB b poison") == "OK published"
    first = await w.line()
    assert first.startswith("MSG b ") and first.endswith(" poison")
    await asyncio.sleep(0.5)
    assert broker.store.get("b.dlq") is None
    assert broker.router.groups["b"]["g"].state.count == 1
    assert await w.cmd("PUB a 3") == "OK published"  # the connection is fine


async def test_max_subscriptions_per_connection(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_subscriptions=2)
    w = await Wire.open(broker.port)
    assert await w.cmd("SUB a") == "OK subscribed a"
    assert await w.cmd("SUB a g") == "OK subscribed a in group g"
    assert await w.cmd("SUB a") == "OK subscribed a"  # already subscribed: fine
    assert await w.cmd("SUB b") == "ERR too many subscriptions"
    assert await w.cmd("UNSUB a") == "OK unsubscribed a"
    assert await w.cmd("SUB b") == "OK subscribed b"


async def test_disk_full_is_an_err_and_publishing_recovers(tmp_path: Path) -> None:
    """A real EFBIG: the broker runs under RLIMIT_FSIZE, then the limit is lifted."""
    limit = 64 * 1024

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    log_path = tmp_path / "broker.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "linemq.broker",
                "--port",
                "0",
                "--data-dir",
                str(tmp_path / "d"),
                "--log-format",
                "json",
                "--segment-bytes",
                str(1 << 30),
            ],
            stderr=log_file,
            preexec_fn=small_files,
        )
    try:
        port = 0
        for _ in range(500):
            text = log_path.read_text()
            if '"listening"' in text:
                port = int(text.split('"port":')[1].split(",")[0].split("}")[0])
                break
            await asyncio.sleep(0.02)
        w = await Wire.open(port)
        payload = "x" * 1000
        replies = []
        for i in range(100):
            replies.append(await w.cmd(f"PUB full {i}-{payload}"))
        ok = replies.count("OK published")
        assert 0 < ok < 100
        failed = [r for r in replies if r != "OK published"]
        assert all(r.startswith("ERR storage unavailable: ") for r in failed), failed[:1]
        # One read: the first run is written at once, the last waits for the tick
        # that the new topic's publish scheduled. Both fail; the new file has room.
        await w.send(f"PUB full a-{payload}\nPUB other x\nPUB full b-{payload}\n")
        first, other, last = await w.lines(3)
        assert first.startswith("ERR storage unavailable: ")
        assert other == "OK published"
        assert last.startswith("ERR storage unavailable: ")
        # Again, with both topics known: one batch, the failed topic's replies in place.
        await w.send(f"PUB full a-{payload}\nPUB other y\nPUB full b-{payload}\nPUB other z\n")
        first, other, last, other2 = await w.lines(4)
        assert first.startswith("ERR storage unavailable: ")
        assert (other, other2) == ("OK published", "OK published")
        assert last.startswith("ERR storage unavailable: ")
        assert await w.cmd("PING") == "OK pong"
        # Space returns: the same broker process takes publishes again.
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        assert await w.cmd("PUB full after") == "OK published"
        await w.send(f"HISTORY full {ok + 5}\n")
        lines = await w.until("OK history end")
        offsets = [int(line.split(" ")[3]) for line in lines[:-1]]
        assert offsets == list(range(1, ok + 2)), "nothing half-written, no gap"
        assert lines[-2].endswith(" after")
    finally:
        proc.kill()
        proc.wait()
    assert '"write_failed"' in log_path.read_text()
