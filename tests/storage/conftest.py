"""Shared helpers for storage tests: small segments so rolls happen after a few records."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from pg_cluster import PgCluster, find_bindir, unavailable
from storage_helpers import OpenLog

from linemq.broker.storage.topic_log import TopicLog


@pytest.fixture
def open_log(tmp_path: pathlib.Path) -> OpenLog:
    def _open(name: str = "t", segment_bytes: int = 1000) -> TopicLog:
        return TopicLog.open(tmp_path / "topics", name, segment_bytes)

    return _open


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL server for the session, started on first use."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install -e '.[postgresql]')")
    bindir = find_bindir()
    if bindir is None:
        unavailable("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    assert bindir is not None
    cluster = PgCluster(bindir)
    cluster.start()
    yield cluster
    cluster.stop()
