"""What the PostgreSQL state store adds to the state conformance suite: its schema
step, one transaction per tick, and a lost connection costing a write, not the store."""

from __future__ import annotations

import psycopg
import pytest
from pg_cluster import PgCluster

from linemq.broker.storage.postgres import PostgresStore
from linemq.broker.storage.postgres_schema import MIGRATIONS, SCHEMA_VERSION
from linemq.broker.storage.postgres_state import PostgresStateStore
from linemq.broker.storage.records import StorageError
from linemq.broker.storage.state_store import EventLog


@pytest.fixture
def dsn(pg_cluster: PgCluster) -> str:
    return pg_cluster.create_database()


def sql(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query.encode())
        return cur.fetchall() if cur.description else []


def opened(dsn: str) -> tuple[PostgresStateStore, dict[EventLog, None]]:
    dirty: dict[EventLog, None] = {}
    store = PostgresStateStore(dsn)
    store.open(lambda log: dirty.setdefault(log, None))
    return store, dirty


def tick(dirty: dict[EventLog, None]) -> None:
    logs = list(dirty)
    dirty.clear()
    for log in logs:
        assert log.write()
    for log in logs:
        log.sync()


async def test_a_version_2_database_is_migrated_and_keeps_its_topics(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
            conn.execute(statement.encode())
        conn.execute("CREATE TABLE linemq_schema (version integer NOT NULL)")
        conn.execute("INSERT INTO linemq_schema VALUES (2)")
        conn.execute("INSERT INTO linemq_topic VALUES ('old', 2, false)")
        conn.execute("INSERT INTO linemq_record VALUES ('old', 1, 'i1', 1.0, 'a', NULL)")
    state, dirty = opened(dsn)
    assert sql(dsn, "SELECT version FROM linemq_schema") == [(SCHEMA_VERSION,)] == [(3,)]
    state.group_log("old", "g").append({"e": "start", "o": 1})
    tick(dirty)
    state.close()
    topics = PostgresStore(dsn)
    topics.open()
    try:
        assert [r.msg for r in await topics.read("old", 1, 10)] == ["a"]
    finally:
        topics.close()
    again, _ = opened(dsn)
    assert again.groups() == [("old", "g")]
    assert again.group_log("old", "g").replay() == [{"e": "start", "o": 1}]
    again.close()


def test_a_tick_writes_one_row_per_log(dsn: str) -> None:
    """However many entries a log got in a tick, the tick adds one row to it."""
    state, dirty = opened(dsn)
    logs = [state.group_log("t", f"g{n}") for n in range(3)]
    for log in logs:
        for n in range(10):
            log.append({"n": n})
    tick(dirty)
    rows = sql(dsn, "SELECT log, count(*) FROM linemq_state_event GROUP BY log ORDER BY log")
    assert rows == [("group/t/g0", 1), ("group/t/g1", 1), ("group/t/g2", 1)]
    state.close()


def test_a_lost_connection_fails_that_write_and_the_store_goes_on(dsn: str) -> None:
    state, dirty = opened(dsn)
    log = state.schedules_log()
    log.append({"job": "a"})
    tick(dirty)
    sql(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname ="
        " current_database() AND pid <> pg_backend_pid()",
    )
    log.append({"job": "b"})
    with pytest.raises(StorageError, match="storage unavailable"):
        tick(dirty)
    log.append({"job": "c"})
    tick(dirty)  # connects again
    state.close()
    again, _ = opened(dsn)
    assert again.schedules_log().replay() == [{"job": "a"}, {"job": "c"}]
    again.close()
