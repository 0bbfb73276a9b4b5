"""What ``pip install`` puts in site-packages, and what ``linemq serve`` loads."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_only_linemq_is_importable_at_the_top(tmp_path: Path) -> None:
    code = (
        "import importlib.util as u;"
        "print([n for n in ('broker', 'clients', 'tools') if u.find_spec(n)], "
        "u.find_spec('linemq.broker') is not None)"
    )
    assert _python(code, tmp_path) == "[] True"


def test_the_short_imports(tmp_path: Path) -> None:
    code = (
        "import linemq; from linemq import Client, SyncClient, LinemqError;"
        "print(Client.__module__, SyncClient.__module__, LinemqError.__module__)"
    )
    assert _python(code, tmp_path) == "linemq.clients.aio linemq.clients.sync linemq.clients.errors"


def test_serve_loads_neither_the_client_nor_the_tools(tmp_path: Path) -> None:
    code = (
        "import sys; import linemq.broker.cli, linemq.broker.server.app;"
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('linemq.')}))"
    )
    assert _python(code, tmp_path) == "['broker']"


def test_every_command_is_listed_and_loads(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from linemq.broker.cli import main

    listed = CliRunner().invoke(main, ["--help"]).output
    for name in ("serve", "auth", "verify", "bench", "torture", "pub", "sub", "dlq", "stats"):
        assert f"  {name}" in listed
        assert CliRunner().invoke(main, [name, "--help"]).exit_code == 0, name


@pytest.mark.timeout(300)
def test_the_wheel_holds_one_top_level_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("linemq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "linemq",
        wheel.name.split("-")[0] + "-0.1.0.dist-info",
    }
    assert "linemq/broker/ops/static/app.js" in names
    assert "linemq/tools/bench/cli.py" in names
    assert "linemq/py.typed" in names


def test_the_lazy_command_list_names_every_client_command() -> None:
    from linemq.broker.cli import _LazyGroup
    from linemq.clients.cli import client_commands

    lazy_client = {n for n, m in _LazyGroup.LAZY.items() if m == "linemq.clients.cli"}
    assert lazy_client == {c.name for c in client_commands}
