"""What one ``linemq serve`` on PostgreSQL checks of its database: that it is the only
node on it, and what the server's replication settings let an ``OK`` promise.

One node per database for now: each node numbers offsets and keeps group state in its
own memory and data directory (postgres.py), so a second node on the same database
would hand out offsets the first one also gives. A node holds a session advisory lock
on its store's connection for as long as it runs; a second node cannot take it and
does not start. The lock goes with the session: when the connection is lost, the store
takes the lock again before it writes anything on the new one.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

from linemq.broker.storage.records import StorageError

NODE_LOCK_KEY: Final = 0x6C696E656D7131  # "linemq1": held by the node serving the database
_HOLDER = """
SELECT a.pid, coalesce(host(a.client_addr), 'local'), a.application_name
FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = (%(key)s >> 32)::oid AND l.objid = (%(key)s & 4294967295)::oid
"""


class StoreInUseError(StorageError):
    """Another linemq node serves this database."""


def take_node_lock(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Take the node lock on ``conn``'s session, or raise ``StoreInUseError`` naming who
    holds it."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (NODE_LOCK_KEY,)).fetchone()
    if row is not None and row[0]:
        return
    holder = conn.execute(_HOLDER, {"key": NODE_LOCK_KEY}).fetchone()
    who = "" if holder is None else f" (server process {holder[0]}, client {holder[1]})"
    raise StoreInUseError(
        f"another linemq node is serving this database{who}: linemq runs one node per"
        " database for now; stop that node or give this one another database"
    )


def replication_warnings(conn: psycopg.Connection[tuple[Any, ...]]) -> list[str]:
    """What an ``OK`` does not promise under the server's settings (nothing when it has a
    synchronous standby and ``synchronous_commit`` waits for it)."""
    commit = _show(conn, "synchronous_commit")
    standbys = _show(conn, "synchronous_standby_names")
    if commit == "off":
        return [
            "synchronous_commit is off: an OK is sent before PostgreSQL has flushed the commit"
            " to disk, so a crash of the database server can lose acknowledged messages;"
            " set synchronous_commit=on"
        ]
    if commit == "local" and standbys:
        return [
            "synchronous_commit is local: an OK does not wait for the synchronous standby,"
            " so losing the primary's disk can lose acknowledged messages;"
            " set synchronous_commit=on"
        ]
    if not standbys:
        return [
            "no synchronous standby (synchronous_standby_names is empty): an OK means the"
            " commit is on this PostgreSQL server's disk only, and losing that server's disk"
            " loses acknowledged messages; configure a synchronous standby for the guarantee"
        ]
    return []


def _show(conn: psycopg.Connection[tuple[Any, ...]], setting: str) -> str:
    row = conn.execute("SELECT current_setting(%s)", (setting,)).fetchone()
    return "" if row is None else str(row[0]).strip()
