"""The PostgreSQL store's drops: retention, ``CLEAN``, ``PURGE``, ``DELETE``, a moved counter.

Each runs on the store's database thread. Records go from the oldest offset up,
so what stays is a contiguous range, as in every store (log_store.LogUpkeep).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import structlog

log = structlog.get_logger(__name__)

Conn = psycopg.Connection[tuple[Any, ...]]

# The first offset whose text, summed from the oldest record, reaches ``over``.
_BY_SIZE = """
SELECT "offset" FROM (
    SELECT "offset", sum(length(msg)) OVER (ORDER BY "offset") AS upto
    FROM linemq_record WHERE topic = %s
) AS x WHERE upto >= %s ORDER BY "offset" LIMIT 1
"""
_DELETE = """
WITH gone AS (
    DELETE FROM linemq_record WHERE topic = %s AND "offset" < %s RETURNING length(msg) AS n
) SELECT count(*), coalesce(sum(n), 0) FROM gone
"""


def expire(
    conn: Conn, topic: str, written: int, over: int | None, cutoff: float | None
) -> tuple[int, int, int]:
    """Retention: (records, bytes) dropped, and the oldest offset kept."""
    keep_from = 0
    if over is not None and over > 0:
        row = conn.execute(_BY_SIZE, (topic, over)).fetchone()
        keep_from = written + 1 if row is None else int(row[0]) + 1
    if cutoff is not None:
        newer = _first_newer(conn, topic, None, cutoff)
        keep_from = max(keep_from, written + 1 if newer is None else newer)
    return _delete(conn, topic, min(keep_from, written))  # the newest record stays


def drop_before(
    conn: Conn, topic: str, keep_from: int, cutoff: float | None
) -> tuple[int, int, int]:
    """Records below ``keep_from`` (with ``cutoff``: up to the first one not older)."""
    if cutoff is not None:
        newer = _first_newer(conn, topic, keep_from, cutoff)
        if newer is not None:
            keep_from = newer
    return _delete(conn, topic, keep_from)


def _first_newer(conn: Conn, topic: str, below: int | None, cutoff: float) -> int | None:
    sql = 'SELECT min("offset") FROM linemq_record WHERE topic = %s AND ts >= %s'
    params: tuple[Any, ...] = (topic, cutoff)
    if below is not None:
        sql += ' AND "offset" < %s'
        params += (below,)
    row = conn.execute(sql, params).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _delete(conn: Conn, topic: str, keep_from: int) -> tuple[int, int, int]:
    row = conn.execute(_DELETE, (topic, keep_from)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), keep_from


def delete_topics(conn: Conn, names: Sequence[str]) -> None:
    """The records go; the rows stay, marked, so the names' offsets go on."""
    with conn.transaction():
        conn.execute("DELETE FROM linemq_record WHERE topic = ANY(%s)", (list(names),))
        conn.execute("UPDATE linemq_topic SET deleted = true WHERE topic = ANY(%s)", (list(names),))


def skip_to(connect: Callable[[], Conn], topic: str, next_offset: int) -> None:
    """Move the counter up (a job of its own: a failure is logged; the next commit to the
    topic moves it past this node's next offset anyway)."""
    try:
        connect().execute(
            "INSERT INTO linemq_topic (topic, next_offset) VALUES (%s, %s)"
            " ON CONFLICT (topic) DO UPDATE"
            " SET next_offset = greatest(linemq_topic.next_offset, excluded.next_offset)",
            (topic, next_offset),
        )
    except psycopg.Error as exc:
        log.error("skip_to_failed", topic=topic, next_offset=next_offset, error=str(exc))
