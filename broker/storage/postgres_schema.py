"""The PostgreSQL store's tables, created and migrated by linemq itself.

The schema carries a version (``linemq_schema``), like the file store's segment
format: each migration moves it up by one, inside one transaction under an
advisory lock so two nodes starting at once do not both migrate. A database
whose schema is newer than this code knows is refused, never written to: an
older linemq cannot know what a newer one keeps there.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

from linemq.broker.storage.records import StorageError

SCHEMA_VERSION: Final = 3
_LOCK_KEY: Final = 0x6C696E656D71  # "linemq": the advisory lock migrations run under

# MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        # One row per topic: the next offset to give, moved in the same statement that
        # inserts the records, so offsets stay gap-free whoever writes.
        """CREATE TABLE linemq_topic (
            topic text PRIMARY KEY,
            next_offset bigint NOT NULL CHECK (next_offset >= 1)
        )""",
        """CREATE TABLE linemq_record (
            topic text NOT NULL,
            "offset" bigint NOT NULL,
            id text NOT NULL,
            ts double precision NOT NULL,
            msg text NOT NULL,
            meta jsonb,
            PRIMARY KEY (topic, "offset")
        )""",
        'CREATE INDEX linemq_record_ts ON linemq_record (topic, ts, "offset")',
    ),
    (
        # A deleted topic keeps its row, so the name goes on above its old offsets.
        "ALTER TABLE linemq_topic ADD COLUMN deleted boolean NOT NULL DEFAULT false",
    ),
    (
        # The broker's state besides topic logs (postgres_state.py): each event log as
        # rows of sealed journal lines, one row per write, replayed in ``seq`` order.
        """CREATE TABLE linemq_state_event (
            log text NOT NULL,
            seq bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (log, seq)
        )""",
        "CREATE TABLE linemq_dedup_marker (topic text PRIMARY KEY)",
    ),
)


class SchemaTooNewError(StorageError):
    """The database was written by a newer linemq."""


def migrate(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """Bring the schema up to ``SCHEMA_VERSION``; the version found before, 0 for none."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS linemq_schema (version integer NOT NULL)")
        row = conn.execute("SELECT max(version) FROM linemq_schema").fetchone()
        found = int(row[0]) if row is not None and row[0] is not None else 0
        if found > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"the database schema is version {found}, newer than this linemq knows"
                f" ({SCHEMA_VERSION}): upgrade linemq to use this database"
            )
        for version in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement.encode())
        if found < SCHEMA_VERSION:
            conn.execute("DELETE FROM linemq_schema")
            conn.execute("INSERT INTO linemq_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
    return found
