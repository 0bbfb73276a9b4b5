"""The README's Python examples, run as written against a fresh live broker.

Blocks are found by the HTML comment just above them: ``<!-- readme-test: run -->``
runs the block, ``<!-- readme-test: fragment … -->`` marks one that is not a whole
program and is skipped on purpose. Every ```python block must carry one or the other.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import BrokerFactory

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"(?:<!-- readme-test: (\w+)[^>]*-->\n)?```python\n(.*?)```", re.DOTALL)
TIMEOUT = 20.0


def readme_blocks() -> list[tuple[str | None, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(README.read_text())]


def runnable() -> list[str]:
    return [code for kind, code in readme_blocks() if kind == "run"]


def test_every_python_block_in_the_readme_is_marked() -> None:
    kinds = [kind for kind, _ in readme_blocks()]
    assert kinds and all(kind in ("run", "fragment") for kind in kinds), kinds
    assert kinds.count("run") >= 2


@pytest.mark.parametrize("index", range(len(runnable())))
async def test_readme_example_runs_to_completion(
    brokers: BrokerFactory, tmp_path: Path, index: int
) -> None:
    broker = await brokers.start()
    code = runnable()[index]
    assert '"127.0.0.1", 8888' in code  # the README shows the default address
    script = tmp_path / "example.py"
    script.write_text(code.replace('"127.0.0.1", 8888', f'"127.0.0.1", {broker.port}'))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        cwd=README.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"README example {index} did not finish within {TIMEOUT} s:\n{code}")
    assert proc.returncode == 0, err.decode()
    assert out.strip(), "the example printed nothing"
