"""`linemq bench` end to end at a tiny size: it starts a broker, runs every workload, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from linemq.tools.bench.workloads import PubCycle, topic_names

SMALL = [
    "--count", "1000", "--latency-count", "200", "--e2e-count", "1000",
    "--rate", "2000", "--rate-seconds", "0.5", "--timeout", "20",
]  # fmt: skip


def _bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from broker.cli import main; main()", "bench", *SMALL, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env=env)


@pytest.mark.timeout(60)
def test_bench_prints_a_table_of_every_workload() -> None:
    done = _bench()
    assert done.returncode == 0, done.stderr
    rows = ["publish msg/s", "publish RTT p99 us", "end to end msg/s", "publish->deliver p99 ms"]
    rows += ["RSS after workloads MiB", "restart to PING ms"]
    for row in rows:
        assert row in done.stdout
    notes = [line for line in done.stdout.splitlines() if line.startswith("note:")]
    assert all("the host stole" in n for n in notes), notes  # only the host may be noted
    assert f"machine: {os.cpu_count()} CPUs" in done.stdout  # figures mean little without it


@pytest.mark.timeout(60)
def test_bench_json_has_results_and_skips_missing_peers_without_failing() -> None:
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no redis/nats binaries
    done = _bench("--json", "--no-restart", "--quiet", "--compare", "redis,nats", env=env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    metrics = doc["results"]["linemq"]
    assert metrics["publish_rate"] > 0
    assert metrics["e2e_rate"] > 0
    assert metrics["deliver_p99_ms"] > 0
    if Path("/proc/stat").exists():  # Linux: how much the host took during the workloads
        assert 0 <= metrics["steal_pct"] <= 100
        assert 0 <= metrics["rtt_steal_pct"] <= 100
    assert doc["machine"]["nproc"]
    assert set(doc["skipped"]) == {"redis", "nats"}
    assert set(doc["results"]) == {"linemq"}


@pytest.mark.timeout(60)
def test_bench_rounds_report_every_round_and_their_medians() -> None:
    done = _bench("--json", "--no-restart", "--quiet", "--rounds", "2")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    rates = [r["linemq"]["publish_rate"] for r in doc["rounds"]]
    assert len(rates) == 2 and all(rate > 0 for rate in rates)
    assert doc["results"]["linemq"]["publish_rate"] == sum(rates) / 2  # the median of two


@pytest.mark.timeout(60)
def test_bench_topics_spreads_publishes_and_groups_over_topics() -> None:
    done = _bench("--topics", "5", "--no-restart", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "publish msg/s (4 conns x window 256, 5 topics)" in done.stdout
    assert "end to end msg/s (group of 4, acking, 5 topics)" in done.stdout


@pytest.mark.timeout(60)
def test_bench_groups_and_subscribers_run_in_the_suite() -> None:
    done = _bench("--groups", "2", "--subscribers", "3", "--no-restart", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "end to end msg/s (2 groups of 4, acking)" in done.stdout
    assert "fanout msg/s (3 subscribers)" in done.stdout
    notes = [line for line in done.stdout.splitlines() if line.startswith("note:")]
    assert all("the host stole" in n for n in notes), notes  # every message reached everyone


def test_pub_cycle_sends_each_publish_to_the_next_topic() -> None:
    encoded = [f"PUB t.{i} x\n".encode() for i in range(3)]
    cycle = PubCycle(encoded, start=1)
    sent = cycle.take(2) + cycle.take(5)
    assert sent.decode().splitlines() == [f"PUB t.{i % 3} x" for i in range(1, 8)]
    assert PubCycle([b"PUB t x\n"]).take(3) == b"PUB t x\n" * 3
    assert topic_names("b", 1) == ["b"] and topic_names("b", 2) == ["b.0", "b.1"]
