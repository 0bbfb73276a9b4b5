"""The Node.js client's own tests (node --test), so the README's one test command runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_node_client_tests_pass() -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing in CI: .ci/run installs Debian's nodejs")
        pytest.skip("node is not installed (CI installs it; here the Node client is untested)")
    # The tests start `python -m broker`: give them this interpreter, which has the broker.
    env = {**os.environ, "LINEMQ_PYTHON": sys.executable}
    done = subprocess.run(
        [node, "--test", "clients/js/test/"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
