"""``linemq auth new-user``: TOML on stdout that the broker loads, the token kept off it."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from linemq.broker.auth import AuthError, load_users
from linemq.broker.cli import main
from tests.conftest import BrokerProcess

NAME = 'team-🚀 "quoted" \\ back'


def new_user(*args: str) -> Result:
    return CliRunner().invoke(main, ["auth", "new-user", *args])


def test_entry_on_stdout_token_on_stderr_and_the_broker_loads_it(tmp_path: Path) -> None:
    first = new_user(NAME, "-p", "orders.>", "-s", "orders.*")
    second = new_user("plain", "--subscribe", "audit.>")
    assert (first.exit_code, second.exit_code) == (0, 0)
    token = first.stderr.splitlines()[-1]
    assert len(token) >= 40 and token not in first.stdout
    assert first.stdout.startswith("[[users]]\n")
    users_file = tmp_path / "users.toml"
    with users_file.open("ab") as f:  # what `>> users.toml` does, twice
        f.write(first.stdout_bytes)
        f.write(second.stdout_bytes)
    users = load_users(users_file)
    assert len(users) == 2
    user = users.authenticate(token)
    assert user is not None
    assert (user.name, user.publish, user.subscribe) == (NAME, ("orders.>",), ("orders.*",))
    other = users.authenticate(second.stderr.splitlines()[-1])
    assert other is not None and (other.name, other.publish) == ("plain", ())


def test_token_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "token"
    made = new_user("svc", "-p", "a", "--token-file", str(path))
    assert made.exit_code == 0
    token = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token not in made.stdout and token not in made.stderr
    assert str(path) in made.stderr
    again = new_user("svc", "--token-file", str(path))
    assert again.exit_code == 1 and "cannot create" in again.stderr
    assert path.read_text().strip() == token


def test_a_bad_pattern_is_a_usage_error() -> None:
    bad = new_user("svc", "-p", "orders..x")
    assert bad.exit_code == 2 and "'orders..x' is not a topic or pattern" in bad.stderr
    assert bad.stdout == ""


def test_a_broker_started_with_the_entry_lets_the_user_in(
    tmp_path: Path, broker_process: Callable[..., BrokerProcess]
) -> None:
    made = new_user(NAME, "-p", "orders.>", "-s", "orders.>")
    users_file = tmp_path / "users.toml"
    users_file.write_bytes(made.stdout_bytes)
    token = made.stderr.splitlines()[-1]
    proc = broker_process("--auth-file", str(users_file))
    port = ["--port", str(proc.port), "--token", token]
    allowed = CliRunner().invoke(main, ["pub", "orders.eu", "hi", *port])
    assert allowed.exit_code == 0, allowed.stderr
    denied = CliRunner().invoke(main, ["pub", "billing", "hi", *port])
    assert (denied.exit_code, denied.stderr) == (1, "ERR permission denied\n")


def test_a_file_that_is_not_utf8_is_refused_with_its_name(tmp_path: Path) -> None:
    users_file = tmp_path / "users.toml"
    users_file.write_bytes(b'[[users]]\nname = "caf\xe9"\n')
    with pytest.raises(AuthError, match=r"users\.toml: .*utf-8"):
        load_users(users_file)
