"""benchmarks/request_opcodes.py at a tiny size: it counts the broker's bytecodes by function."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "request_opcodes.py"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("request_name", ["PUB", "PING"])
def test_request_opcodes_counts_the_connections_bytecodes(request_name: str) -> None:
    cmd = [sys.executable, str(SCRIPT), "--request", request_name, "--requests", "20"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["request"] == request_name
    assert report["by_function"]["connection.py:Connection.data_received"] > 0
    assert report["bytecodes"] == pytest.approx(sum(report["by_function"].values()))
    assert 0 < report["before_reply"] < report["bytecodes"]
    if request_name == "PUB":
        assert report["by_function"]["topic_log.py:TopicLog.write_one"] > 0
