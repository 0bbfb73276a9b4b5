"""What the PostgreSQL store adds to the conformance suite: its schema, and offsets the
database gives at commit."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from pg_cluster import PgCluster

from linemq.broker.storage.postgres import PostgresStore
from linemq.broker.storage.postgres_node import StoreInUseError
from linemq.broker.storage.postgres_schema import MIGRATIONS, SCHEMA_VERSION, SchemaTooNewError
from linemq.broker.storage.records import StorageError


@pytest.fixture
def dsn(pg_cluster: PgCluster) -> str:
    return pg_cluster.create_database()


@pytest.fixture
def store(dsn: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(dsn)
    opened.open()
    yield opened
    opened.close()


def sql(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query.encode())
        return cur.fetchall() if cur.description else []


def test_a_new_database_gets_the_current_schema_once(dsn: str) -> None:
    for _ in range(2):  # the second open finds the schema and migrates nothing
        store = PostgresStore(dsn)
        store.open()
        store.close()
    assert sql(dsn, "SELECT version FROM linemq_schema") == [(SCHEMA_VERSION,)]


async def test_a_version_1_database_is_migrated_and_keeps_its_records(dsn: str) -> None:
    """Version 2 marks deleted topics; a database from before keeps every topic it had."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement.encode())
        conn.execute("CREATE TABLE linemq_schema (version integer NOT NULL)")
        conn.execute("INSERT INTO linemq_schema VALUES (1)")
        conn.execute("INSERT INTO linemq_topic VALUES ('old', 3)")
        conn.execute(
            "INSERT INTO linemq_record VALUES ('old', 1, 'i1', 1.0, 'a', NULL),"
            " ('old', 2, 'i2', 1.0, 'b', NULL)"
        )
    store = PostgresStore(dsn)
    store.open()
    try:
        assert sql(dsn, "SELECT version FROM linemq_schema") == [(SCHEMA_VERSION,)]
        assert store.topics() == ["old"]
        assert [r.msg for r in await store.read("old", 1, 10)] == ["a", "b"]
        assert store.footprint("old").bytes == 2
    finally:
        store.close()


def test_a_schema_newer_than_this_linemq_is_refused(dsn: str) -> None:
    PostgresStore(dsn).open()
    sql(dsn, f"UPDATE linemq_schema SET version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNewError, match=r"newer than this linemq knows.*upgrade linemq"):
        PostgresStore(dsn).open()
    assert sql(dsn, "SELECT version FROM linemq_schema") == [(SCHEMA_VERSION + 1,)]


def test_an_unreachable_database_is_a_clear_storage_error() -> None:
    with pytest.raises(StorageError, match="storage unavailable"):
        PostgresStore("postgresql://linemq@127.0.0.1:1/nothing?connect_timeout=2").open()


async def test_the_database_gives_offsets_at_commit_so_a_second_writer_shares_them(
    store: PostgresStore, dsn: str
) -> None:
    """Another writer took offset 3: this node's next records go on after it, stored and
    answered, with no conflict and no gap; records carry no offset until then."""
    store.append("t", ["a", "b"], 1.0, ["i1", "i2"])
    await store.commit().ticket
    sql(dsn, "INSERT INTO linemq_record VALUES ('t', 3, 'other', 1.0, 'theirs', NULL)")
    sql(dsn, "UPDATE linemq_topic SET next_offset = 4 WHERE topic = 't'")
    mine = store.append("t", ["mine", "too"], 2.0, ["i3", "i4"])
    assert [r.offset for r in mine.records] == [0, 0], "given by the database, at commit"
    done = store.commit()
    assert [r.offset for r in await mine] == [4, 5]
    assert [r.offset for r in done.written["t"]] == [4, 5]
    assert store.last_offset("t") == 5
    view = store.get("t")
    assert view is not None and view.written_offset == 5
    assert [(r.offset, r.msg) for r in await store.read("t", 1, 10)] == [
        (1, "a"),
        (2, "b"),
        (3, "theirs"),
        (4, "mine"),
        (5, "too"),
    ]
    assert [r.msg for r in await store.read("t", 4, 10)] == ["mine", "too"]


async def test_skip_to_holds_even_if_its_own_write_was_lost(store: PostgresStore, dsn: str) -> None:
    store.append("t", ["a"], 1.0, ["i1"])
    await store.commit().ticket
    assert store.skip_to("t", 10, "test: lost offsets")
    store.append("other", ["x"], 1.0, ["ix"])
    await store.commit().ticket  # the skip's job ran before this commit
    sql(dsn, "UPDATE linemq_topic SET next_offset = 2 WHERE topic = 't'")  # as if it failed
    after = store.append("t", ["b"], 2.0, ["i2"])
    store.commit()
    assert [r.offset for r in await after] == [10], "no offset below the skip is given"


async def test_a_lost_connection_fails_the_batch_and_the_store_reconnects(
    store: PostgresStore, dsn: str
) -> None:
    store.append("t", ["a"], 1.0, ["i1"])
    await store.commit().ticket
    sql(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    lost = store.append("t", ["b"], 2.0, ["i2"])
    done = store.commit()
    assert not done.settled, "settled once the database has answered"
    with pytest.raises(StorageError, match="storage unavailable"):
        await lost
    assert done.settled and done.written == {} and [r.msg for r in done.failed["t"]] == ["b"]
    view = store.get("t")
    assert view is not None and view.written_offset == 1, "nothing of it is shown or sent"
    retried = store.append("t", ["b"], 2.0, ["i2"])
    done = store.commit()
    assert [r.offset for r in await retried] == [2], "the lost offset is given again"
    assert [r.offset for r in done.written["t"]] == [2] and view.written_offset == 2
    assert [r.msg for r in await store.read("t", 1, 10)] == ["a", "b"]


async def test_one_node_at_a_time_even_after_its_connection_was_lost(dsn: str) -> None:
    """The node lock goes with the session: a node whose connection was cut takes it again
    before writing, and writes nothing once another node holds it."""
    first = PostgresStore(dsn, exclusive=True)
    first.open()
    with pytest.raises(StoreInUseError, match="another linemq node is serving this database"):
        PostgresStore(dsn, exclusive=True).open()
    first.append("t", ["a"], 1.0, ["i1"])
    await first.commit().ticket
    sql(
        dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    second = PostgresStore(dsn, exclusive=True)
    second.open()
    try:
        for msg in ("b", "c"):  # the first fails on the cut connection, the next on the lock
            lost = first.append("t", [msg], 2.0, ["i2"])
            first.commit()
            with pytest.raises(StorageError, match="storage unavailable"):
                await lost
        assert "another linemq node" in str(lost.ticket.errors["t"])
        kept = second.append("t", ["d"], 3.0, ["i3"])
        second.commit()
        assert [r.offset for r in await kept] == [2]
    finally:
        second.close()
        first.close()


def test_a_server_that_does_not_flush_commits_is_warned_about(dsn: str) -> None:
    store = PostgresStore(dsn + "?options=-csynchronous_commit%3Doff")
    store.open()
    store.close()
    assert len(store.warnings) == 1
    assert "synchronous_commit is off" in store.warnings[0]
    store = PostgresStore(dsn)
    store.open()
    store.close()
    assert "no synchronous standby" in store.warnings[0], "the test server has none"
