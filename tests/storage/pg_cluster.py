"""A throwaway PostgreSQL cluster for tests: initdb and pg_ctl in a temp dir, on a free port.

PostgreSQL refuses to run as root, so as root the cluster runs as an unprivileged
system user (created when missing). Each test gets a database of its own.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PG_USER = "linemq-test"  # the system user the server runs as when the tests run as root


def find_bindir() -> Path | None:
    """Debian's server binaries (newest first), or pg_ctl on PATH; None when absent."""
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(initdb).parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgCluster:
    """One running server; ``dsn(db)`` for a database made by ``create_database``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="linemq-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            if subprocess.run(["id", "-u", PG_USER], capture_output=True).returncode != 0:
                subprocess.run(
                    ["useradd", "--system", "--no-create-home", PG_USER],
                    check=True,
                    capture_output=True,
                )
            shutil.chown(self.root, PG_USER)
            self._as = ["runuser", "-u", PG_USER, "--"]

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bindir / tool), *args], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-U", "linemq", "-A", "trust", "-E", "UTF8")
        # fsync off: these tests check linemq's SQL, not PostgreSQL's own durability.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off"
        )
        self._pg(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        try:
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, db: str) -> str:
        return f"postgresql://linemq@127.0.0.1:{self.port}/{db}"

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        return self.dsn(name)


def unavailable(reason: str) -> None:
    """Skip outside CI; in CI a missing PostgreSQL is a failure (``.ci/run`` installs it)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} in CI: .ci/run installs Debian's postgresql")
    pytest.skip(f"{reason} (CI installs it; here the PostgreSQL store is untested)")
