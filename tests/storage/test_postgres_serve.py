"""``linemq serve --store postgresql://...``: a real broker process on a real PostgreSQL.

Topics and the state of groups live in the database: what survives a restart, a kill -9
and the loss of the data directory, and what a second node, a newer schema, a bad URI
or an unreachable database get.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from pg_cluster import PgCluster

from linemq.broker.storage.postgres import PostgresStore
from linemq.broker.storage.postgres_schema import SCHEMA_VERSION
from tests.conftest import BrokerProcess
from tests.server.groupwire import member, next_msg
from tests.wire import Wire

Start = Callable[..., BrokerProcess]
FAST = (
    "--ack-timeout",
    "0.3",
    "--retry-backoff-base",
    "0.05",
    "--retry-backoff-max",
    "0.2",
    "--shutdown-grace",
    "0",
)


@pytest.fixture
def dsn(pg_cluster: PgCluster) -> str:
    return pg_cluster.create_database()


def serve(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``linemq serve`` that is expected to exit at once."""
    cmd = [sys.executable, "-m", "linemq.broker", "--port", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def history(lines: list[str]) -> list[tuple[int, str]]:
    """(offset, text) of each HISTORY line before the end line."""
    out = []
    for line in lines[:-1]:
        _, _, _, offset, _, text = line.split(" ", 5)
        out.append((int(offset), text))
    return out


async def test_fanout_groups_history_and_restarts_on_postgres(
    broker_process: Start, dsn: str, tmp_path: Path
) -> None:
    proc = broker_process("--store", dsn, *FAST)
    (opened,) = [e for e in proc.events() if e.get("event") == "store_opened"]
    assert (opened["store"], opened["host"], opened["topics"]) == ("postgresql", "127.0.0.1", 0)
    warnings = [e for e in proc.events() if e.get("event") == "postgres_replication"]
    assert warnings and "no synchronous standby" in warnings[0]["warning"]
    assert not (proc.data_dir / "topics").exists(), "topic logs are not files"
    fan = await Wire.open(proc.port)
    assert await fan.cmd("SUB jobs") == "OK subscribed jobs"
    workers = [await member(proc.port, "jobs", "w") for _ in range(2)]
    pub = await Wire.open(proc.port)
    await pub.send("".join(f"PUB jobs job-{i}\n" for i in range(6)))
    assert await pub.lines(6) == ["OK published"] * 6
    assert [(await next_msg(fan)).text for _ in range(6)] == [f"job-{i}" for i in range(6)]
    got = [await next_msg(w) for w in workers for _ in range(3)]
    assert sorted(d.offset for d in got) == list(range(1, 7))
    for w, mine in ((workers[0], got[:3]), (workers[1], got[3:])):
        ids = [d.id for d in mine if d.offset <= 4]
        await w.send("".join(f"ACK {i}\n" for i in ids))
        assert await w.lines(len(ids)) == ["OK ack_received"] * len(ids)
    await pub.send("HISTORY jobs 10\n")
    assert history(await pub.until("OK history end")) == [(i + 1, f"job-{i}") for i in range(6)]
    for w in (fan, pub, *workers):
        await w.close()
    assert proc.terminate() == 0

    # Same data dir, same database: the messages, their offsets and the group's acks stay.
    proc = broker_process("--store", dsn, *FAST, data_dir=proc.data_dir)
    again = await member(proc.port, "jobs", "w")
    redelivered = sorted([(await next_msg(again)).offset for _ in range(2)])
    assert redelivered == [5, 6], "the unacked come back, the acked do not"
    pub = await Wire.open(proc.port)
    assert await pub.cmd("PUB jobs job-6") == "OK published"
    assert (await next_msg(again)).offset == 7
    await pub.close()
    await again.close()
    assert proc.terminate() == 0

    # The node's disk is lost: a new data dir on the same database still serves the topic.
    proc = broker_process("--store", dsn, *FAST, data_dir=tmp_path / "new-disk")
    pub = await Wire.open(proc.port)
    await pub.send("HISTORY jobs 10\n")
    assert history(await pub.until("OK history end")) == [(i + 1, f"job-{i}") for i in range(7)]
    assert await pub.cmd("PUB jobs job-7") == "OK published"
    await pub.send("HISTORY jobs 1\n")
    assert history(await pub.until("OK history end")) == [(8, "job-7")], "offsets go on"


async def test_group_state_survives_a_new_data_dir_on_the_same_database(
    broker_process: Start, dsn: str, tmp_path: Path
) -> None:
    """The node's disk is lost: its successor on the same database knows what was acked,
    which publisher ids it stored, and its repeatable jobs. With --store, replies wait
    for the database's commit by default (no --fsync given here), so a kill -9 right
    after an OK loses nothing it answered."""
    proc = broker_process("--store", dsn, *FAST)
    worker = await member(proc.port, "jobs", "w")
    pub = await Wire.open(proc.port)
    await pub.send("PUT orders 3 id=order-42\nabc\n")
    first = (await pub.line()).split()
    assert first[:3] == ["OK", "published", "1"]
    await pub.send('SCHEDULE reports nightly 12 cron="0 2 * * *"\nbuild report\n')
    assert (await pub.line()).startswith("OK scheduled reports nightly next=")
    await pub.send("PUB jobs acked\nPUB jobs unacked\n")
    assert await pub.lines(2) == ["OK published"] * 2
    acked, unacked = await next_msg(worker), await next_msg(worker)
    assert await worker.cmd(f"ACK {acked.id}") == "OK ack_received"
    proc.kill9()
    assert not list(proc.data_dir.glob("groups/**/*.journal")), "no group state in files"

    proc = broker_process("--store", dsn, *FAST, data_dir=tmp_path / "new-disk")
    again = await member(proc.port, "jobs", "w")
    got = await next_msg(again)
    assert (got.offset, got.text) == (unacked.offset, "unacked"), "the unacked comes back"
    assert await again.cmd(f"ACK {got.id}") == "OK ack_received"
    assert await again.silent(0.5), "the acked one is not delivered again"
    pub = await Wire.open(proc.port)
    await pub.send("PUT orders 3 id=order-42\nabc\n")
    assert (await pub.line()).split() == ["OK", "duplicate", "1", first[3]], "ids are known"
    await pub.send("SCHEDULES\n")
    listed = await pub.until("OK schedules end")
    assert len(listed) == 2
    assert listed[0].startswith('SCHEDULE reports nightly cron="0 2 * * *" next=')


async def test_kill_9_after_ok_published_loses_nothing(broker_process: Start, dsn: str) -> None:
    proc = broker_process("--store", dsn)
    pub = await Wire.open(proc.port)
    await pub.send("".join(f"PUB t m{i}\n" for i in range(300)))
    assert await pub.lines(300) == ["OK published"] * 300
    proc.kill9()
    with psycopg.connect(dsn) as conn:
        stored = conn.execute(
            "SELECT \"offset\", msg FROM linemq_record WHERE topic = 't' ORDER BY 1"
        ).fetchall()
    assert stored == [(i + 1, f"m{i}") for i in range(300)]
    proc = broker_process("--store", dsn, data_dir=proc.data_dir)
    pub = await Wire.open(proc.port)
    await pub.send("HISTORY t 1000\n")
    assert history(await pub.until("OK history end")) == [(i + 1, f"m{i}") for i in range(300)]
    assert await pub.cmd("PUB t next") == "OK published"
    await pub.send("HISTORY t 1\n")
    assert history(await pub.until("OK history end")) == [(301, "next")]


async def test_a_commit_the_database_lost_reaches_no_subscriber_or_group(
    broker_process: Start, dsn: str
) -> None:
    proc = broker_process("--store", dsn, *FAST)
    fan = await Wire.open(proc.port)
    assert await fan.cmd("SUB t") == "OK subscribed t"
    worker = await member(proc.port, "t", "w")
    pub = await Wire.open(proc.port)
    assert await pub.cmd("PUB t first") == "OK published"
    assert (await next_msg(fan)).offset == 1
    assert (await next_msg(worker)).offset == 1
    with psycopg.connect(dsn, autocommit=True) as conn:  # the node's connection is cut
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    assert (await pub.cmd("PUB t lost")).startswith("ERR storage unavailable")
    assert await pub.cmd("PUB t kept") == "OK published"
    kept = await next_msg(fan)
    assert (kept.offset, kept.text) == (2, "kept"), "the lost message went to no one"
    got = await next_msg(worker)
    assert (got.offset, got.text) == (2, "kept")
    assert await fan.silent(0.2)


def test_a_second_node_on_the_same_database_is_refused(
    broker_process: Start, dsn: str, tmp_path: Path
) -> None:
    first = broker_process("--store", dsn)
    second = serve("--data-dir", str(tmp_path / "other"), "--store", dsn)
    assert second.returncode == 1
    assert "another linemq node is serving this database" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.proc is not None and first.proc.poll() is None, "the first node runs on"
    assert first.terminate() == 0
    broker_process("--store", dsn, data_dir=tmp_path / "other")  # now it may


def test_a_schema_newer_than_this_linemq_is_refused_at_start(dsn: str, tmp_path: Path) -> None:
    store = PostgresStore(dsn)
    store.open()
    store.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE linemq_schema SET version = %s", (SCHEMA_VERSION + 1,))
    done = serve("--data-dir", str(tmp_path / "d"), "--store", dsn)
    assert done.returncode == 1
    assert f"schema is version {SCHEMA_VERSION + 1}" in done.stderr
    assert f"this linemq knows ({SCHEMA_VERSION})" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    dead = "postgresql://linemq@127.0.0.1:1/db?connect_timeout=2"
    done = serve("--data-dir", str(tmp_path / "d"), "--store", dead)
    assert done.returncode == 1
    assert "cannot use the PostgreSQL store: storage unavailable" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_store_that_is_not_postgresql_is_a_usage_error(tmp_path: Path) -> None:
    done = serve("--data-dir", str(tmp_path / "d"), "--store", "mysql://u:secret@h/db")
    assert done.returncode == 2
    assert "takes a postgresql:// (or postgres://) URI, not mysql://" in done.stderr
    assert "secret" not in done.stderr
    assert not (tmp_path / "d").exists()


def test_without_psycopg_the_message_says_what_to_install(tmp_path: Path) -> None:
    hide = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from linemq.broker.cli import main\n"
        "main(['serve', '--port', '0', '--data-dir', sys.argv[1], '--store', sys.argv[2]])"
    )
    cmd = [sys.executable, "-c", hide, str(tmp_path / "d"), "postgres://h/db"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "pip install 'linemq[postgresql]'" in done.stderr


def test_the_file_store_path_does_not_import_psycopg() -> None:
    check = (
        "import sys\n"
        "import linemq.broker.cli, linemq.broker.server.app\n"
        "assert 'psycopg' not in sys.modules, 'psycopg imported'"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_offsets_the_database_gives_reach_put_replies_dead_letters_and_seek(
    broker_process: Start, dsn: str
) -> None:
    proc = broker_process("--store", dsn, "--max-retries", "0", *FAST)
    w = await Wire.open(proc.port)
    await w.send("PUB t zero\nHISTORY t 10\n")
    assert await w.line() == "OK published"
    assert history(await w.until("OK history end")) == [(1, "zero")], "read your own PUB"
    await w.send(b"PUT t 3 id=k\nabcPUT t 3 id=k\nabc\n".replace(b"abcPUT", b"abc\nPUT"))
    first, repeat = await w.line(), await w.line()
    assert first.startswith("OK published 2 ")
    assert repeat == "OK duplicate 2 " + first.split()[3]
    await w.send(b"PUT t 3 id=k\nabc\n")
    assert await w.line() == "OK duplicate 2 " + first.split()[3]
    m = await member(proc.port, "t", "g")
    assert await w.cmd("SEEK t g earliest") == "OK seek t g 1"
    zero, abc = await next_msg(m), await next_msg(m)
    assert [(x.offset, x.text) for x in (zero, abc)] == [(1, "zero"), (2, "abc")]
    await m.send(f"TERM {zero.id} broken\nACK {abc.id}\n")
    assert await m.lines(2) == ["OK terminated", "OK ack_received"]
    assert await w.cmd("REPLAY t ALL") == "OK replayed 1"
    again = await next_msg(m)
    assert (again.offset, again.text) == (3, "zero")
    await w.send("DLQ t\n")
    letter = (await w.until("OK dlq end"))[0]
    assert '"offset":3' in letter.replace(" ", ""), "the replay is journaled with its offset"
    assert await w.cmd("SEEK t g latest") == "OK seek t g 4"
