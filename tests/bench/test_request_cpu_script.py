"""benchmarks/request_cpu.py at a tiny size: it runs every server and prints their CPU."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "request_cpu.py"


@pytest.mark.timeout(60)
def test_request_cpu_reports_linemq_the_bare_loop_and_the_floor() -> None:
    cmd = [sys.executable, str(SCRIPT), "--requests", "200", "--rounds", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    medians = json.loads(done.stdout.splitlines()[-1])["medians"]
    assert {"linemq PUB", "linemq PING", "uvloop echo", "python floor"} <= set(medians)
    for figures in medians.values():
        assert figures["rtt_us"] > 0 and figures["user_us"] >= 0
        # NaN when no clock tick passed: 200 requests can take under 10 ms on a fast host
        if Path("/proc/stat").exists() and not math.isnan(figures["steal_pct"]):
            assert 0 <= figures["steal_pct"] <= 100


@pytest.mark.timeout(120)
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_request_cpu_counts_instructions_under_callgrind() -> None:
    cmd = [sys.executable, str(SCRIPT), "--instructions", "--requests", "100", "--only", "echo"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout.splitlines()[-1])["instructions"]
    assert set(counts) == {"uvloop echo"}
    assert 500 < counts["uvloop echo"] < 100_000  # a read, a write and one Python call
