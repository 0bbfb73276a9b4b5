"""Every ``linemq`` client command against a real broker (a subprocess), through CliRunner.

CliRunner's stdout is not a terminal, so everything here is the piped output:
plain text, never cut, no control codes. Each test uses its own topics, so one
broker serves the module.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from linemq.broker.cli import main
from linemq.clients import cli_output
from linemq.clients.aio import Client
from linemq.clients.sync import SyncClient
from tests.conftest import BrokerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
ID = r"msg_\d{13}_[0-9a-f]{8}"


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    data = tmp_path_factory.mktemp("cli") / "data"
    proc = BrokerProcess(data, ["--max-retries", "0", "--ack-timeout", "5"]).start()
    yield proc.port
    proc.stop()


def linemq(port: int, *args: str, stdin: str | None = None, **kwargs: Any) -> Result:
    return CliRunner().invoke(main, [*args, "--port", str(port)], input=stdin, **kwargs)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(result).splitlines()]


def publish(port: int, topic: str, *texts: str) -> None:
    with SyncClient(port=port) as c:
        c.publish_many(topic, texts)


def commands(group: click.Group, path: str = "linemq") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, f"{path} {name}")
        else:
            yield f"{path} {name}", command


def test_every_option_has_help() -> None:
    missing = [
        (path, p.opts)
        for path, command in commands(main)
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden and not p.help
    ]
    assert missing == []


def test_every_data_command_takes_json() -> None:
    data = {"pub", "sub", "history", "seek", "ping", "topics", "pause", "resume"}
    data |= {"groups show", "groups delete"}
    data |= {"dlq list", "dlq replay", "dlq purge", "stats", "bench"}
    for path, command in commands(main):
        name = path.removeprefix("linemq ")
        if name in data:
            assert "--json" in {o for p in command.params for o in p.opts}, name


def test_exit_codes_0_ok_1_error_2_usage(port: int) -> None:
    assert linemq(port, "pub", "codes", "hi").exit_code == 0
    assert linemq(port, "pub", "codes", "hi", "--no-such-option").exit_code == 2
    assert linemq(port, "pub", "bad topic!", "hi").exit_code == 2
    assert linemq(port, "history").exit_code == 2  # missing TOPIC
    refused = CliRunner().invoke(main, ["ping", "--port", "1"])
    assert refused.exit_code == 1 and refused.stderr.startswith("error: 127.0.0.1:1:")
    err = linemq(port, "pause", "codes", "nope")
    assert (err.exit_code, err.stdout, err.stderr) == (1, "", "ERR no group nope on codes\n")


def test_ping_prints_one_line_per_pong(port: int) -> None:
    lines = ok(linemq(port, "ping", "-n", "2", "-i", "0")).splitlines()
    assert [re.sub(r"time=[\d.]+ ms", "time=T ms", line) for line in lines] == [
        f"pong from 127.0.0.1:{port} seq=1 time=T ms",
        f"pong from 127.0.0.1:{port} seq=2 time=T ms",
    ]
    (pong,) = json_lines(linemq(port, "ping", "--json"))
    assert (pong["host"], pong["port"], pong["seq"]) == ("127.0.0.1", port, 1)
    assert pong["ms"] >= 0


def test_topics_lists_counts_as_a_table_and_as_json(port: int) -> None:
    publish(port, "listed.a", "1", "2", "3")
    header, *rows = ok(linemq(port, "topics")).splitlines()
    assert header.split() == ["TOPIC", "PUBLISHED", "OFFSETS", "SIZE", "SEGMENTS", "SUBS", "GROUPS"]
    (row,) = [r.split() for r in rows if r.startswith("listed.a ")]
    assert row[:3] == ["listed.a", "3", "1-3"]
    (entry,) = [t for t in json_lines(linemq(port, "topics", "--json")) if t["topic"] == "listed.a"]
    assert (entry["published"], entry["first_offset"], entry["last_offset"]) == (3, 1, 3)


def test_pub_json_and_dedup_id_with_its_old_spelling(port: int) -> None:
    (first,) = json_lines(linemq(port, "pub", "dedup", "hello", "--json"))
    assert first["topic"] == "dedup" and first["offset"] == 1 and not first["duplicate"]
    assert re.fullmatch(ID, first["id"])
    made = ok(linemq(port, "pub", "dedup", "once", "--dedup-id", "d-1", "-v"))
    assert re.fullmatch(rf"published 2 {ID}\n", made)
    old = ok(linemq(port, "pub", "dedup", "once", "--id", "d-1", "-v"))  # hidden old spelling
    assert old == made.replace("published", "duplicate")
    both = linemq(port, "pub", "dedup", "x", "--dedup-id", "a", "--id", "b")
    assert both.exit_code == 2 and "--id is the old spelling of --dedup-id" in both.stderr
    helptext = ok(linemq(port, "pub", "--help"))
    assert "--dedup-id" in helptext and "--id " not in helptext
    lines = json_lines(linemq(port, "pub", "dedup", "--json", stdin="a\nb\n"))
    assert [line["offset"] for line in lines] == [3, 4]


def test_counts_are_n_or_count_everywhere_and_c_still_works(port: int) -> None:
    publish(port, "counted", "a", "b", "c")
    assert ok(linemq(port, "history", "counted", "-n", "2")) == ok(
        linemq(port, "history", "counted", "--count", "2")
    )
    for spelling in ("-n", "--count", "-c"):
        out = ok(linemq(port, "sub", "counted", "--from", "earliest", spelling, "2"))
        assert [line.split(" ", 5)[5] for line in out.splitlines()] == ["a", "b"]
    assert " -c" not in ok(linemq(port, "sub", "--help"))


def test_history_and_sub_json_one_object_per_message(port: int) -> None:
    with SyncClient(port=port) as c:
        c.put("jsonmsgs", "plain")
        c.put("jsonmsgs", b"\xffbin", key="k", headers={"h": "v"}, priority="high")
    history = json_lines(linemq(port, "history", "jsonmsgs", "--json"))
    assert [m.get("payload") for m in history] == ["plain", None]
    assert history[1]["payload_b64"] == "/2Jpbg=="
    assert (history[1]["key"], history[1]["headers"], history[1]["priority"]) == (
        "k",
        {"h": "v"},
        "high",
    )
    assert [m["offset"] for m in history] == [1, 2] and all(
        m["topic"] == "jsonmsgs" for m in history
    )
    subbed = json_lines(linemq(port, "sub", "jsonmsgs", "--from", "1", "-n", "2", "--json"))
    assert [m["id"] for m in subbed] == [m["id"] for m in history]


def test_sub_history_then_live_misses_and_doubles_nothing(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(port, "hist", "old-1", "old-2", "old-3")
    real_history = Client.history

    async def history_then_publish(self: Client, topic: str, n: int) -> Any:
        past = await real_history(self, topic, n)
        publish(port, topic, "between")  # lands after HISTORY, before SUB
        return past

    monkeypatch.setattr(Client, "history", history_then_publish)
    out = ok(linemq(port, "sub", "hist", "--history", "2", "-n", "3"))
    kinds_and_texts = [(line.split()[0], line.split(" ", 5)[5]) for line in out.splitlines()]
    assert kinds_and_texts == [("HISTORY", "old-2"), ("HISTORY", "old-3"), ("MSG", "between")]
    for bad in (["-g", "w"], ["--from", "earliest"]):
        assert linemq(port, "sub", "hist", "--history", "2", *bad).exit_code == 2
    assert linemq(port, "sub", "hist.*", "--history", "2").exit_code == 2


def test_sub_history_on_an_empty_topic_starts_at_its_first_message(
    port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_history = Client.history

    async def history_then_publish(self: Client, topic: str, n: int) -> Any:
        past = await real_history(self, topic, n)
        publish(port, topic, "first")
        return past

    monkeypatch.setattr(Client, "history", history_then_publish)
    (msg,) = json_lines(linemq(port, "sub", "fresh", "--history", "5", "-n", "1", "--json"))
    assert (msg["offset"], msg["payload"]) == (1, "first")


def test_groups_pause_and_resume(port: int) -> None:
    publish(port, "paused", "a")
    ok(linemq(port, "sub", "paused", "-g", "w", "--from", "earliest", "-n", "1"))
    header, row = ok(linemq(port, "groups", "paused")).splitlines()
    columns = dict(zip(header.split(), row.split(), strict=True))
    assert (columns["GROUP"], columns["ACKED"], columns["PAUSED"]) == ("w", "1", "0")
    assert ok(linemq(port, "pause", "paused", "w")) == "paused paused w\n"
    (group,) = json_lines(linemq(port, "groups", "paused", "--json"))
    assert (group["topic"], group["group"], group["paused"]) == ("paused", "w", 1)
    resumed = json_lines(linemq(port, "resume", "paused", "w", "--json"))
    assert resumed == [{"topic": "paused", "group": "w", "paused": False}]
    assert json_lines(linemq(port, "groups", "paused", "--json"))[0]["paused"] == 0
    assert ok(linemq(port, "groups", "nogroups")) == "no consumer groups on nogroups\n"
    assert ok(linemq(port, "groups", "nogroups", "--json")) == ""


def test_groups_delete_asks_needs_yes_in_a_script_and_deletes(port: int) -> None:
    publish(port, "retired", "a")
    ok(linemq(port, "sub", "retired", "-g", "typo", "--from", "earliest", "-n", "1"))
    ok(linemq(port, "sub", "retired", "-g", "keep", "--from", "earliest", "-n", "1"))
    refused = linemq(port, "groups", "delete", "retired", "typo")  # not a terminal
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert ok(linemq(port, "groups", "delete", "retired", "typo", "--yes")) == (
        "deleted retired typo\n"
    )
    assert [g["group"] for g in json_lines(linemq(port, "groups", "retired", "--json"))] == ["keep"]
    assert [
        g["group"] for g in json_lines(linemq(port, "groups", "show", "retired", "--json"))
    ] == ["keep"]
    again = linemq(port, "groups", "delete", "retired", "typo", "-y")
    assert (again.exit_code, again.stderr) == (1, "ERR no group typo on retired\n")
    assert json_lines(linemq(port, "groups", "delete", "retired", "keep", "-y", "--json")) == [
        {"topic": "retired", "group": "keep", "deleted": True}
    ]
    assert linemq(port, "groups", "delete", "retired", "bad group", "-y").exit_code == 2
    # A wildcard group, and --force while a member is connected.
    with SyncClient(port=port) as member:
        member.subscribe("retired.*", "wild")
        busy = linemq(port, "groups", "delete", "retired.*", "wild", "-y")
        assert (busy.exit_code, busy.stderr) == (1, "ERR group has members\n")
        forced = linemq(port, "groups", "delete", "retired.*", "wild", "-y", "--force")
        assert ok(forced) == "deleted retired.* wild\n"


def answer_on_a_terminal(port: int, answer: str, *args: str) -> tuple[int, str]:
    """Run ``linemq <args>`` with a terminal as stdin and stderr, typing ``answer``."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from broker.cli import main; main()", *args, "--port", str(port)],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    os.write(leader, answer.encode())
    out, _ = proc.communicate(timeout=30)
    os.close(leader)
    return proc.returncode, out.decode()


def test_groups_delete_confirms_on_a_terminal(port: int) -> None:
    publish(port, "asked", "a")
    ok(linemq(port, "sub", "asked", "-g", "g", "--from", "earliest", "-n", "1"))
    assert answer_on_a_terminal(port, "n\n", "groups", "delete", "asked", "g") == (1, "")
    assert len(json_lines(linemq(port, "groups", "asked", "--json"))) == 1
    assert answer_on_a_terminal(port, "y\n", "groups", "delete", "asked", "g") == (
        0,
        "deleted asked g\n",
    )
    assert json_lines(linemq(port, "groups", "asked", "--json")) == []


def dead_letter(port: int, topic: str, text: str) -> str:
    """Publish ``text`` and NACK it in a group (--max-retries 0): its id, once dead."""
    with SyncClient(port=port) as c:
        sub = c.subscribe(topic, "workers")
        c.publish(topic, text)
        m = sub.next(5)
        m.nack()
        deadline = time.monotonic() + 5
        while not any(d.id == m.id for d in c.dlq(topic)):
            assert time.monotonic() < deadline, "never dead-lettered"
            time.sleep(0.01)
        return m.id


def test_dlq_list_replay_and_purge(port: int) -> None:
    long_text = "a poison message " + "x" * 120 + " [red]not markup[/red] end"
    msg_id = dead_letter(port, "dead", long_text)
    header, row = ok(linemq(port, "dlq", "list", "dead")).splitlines()
    assert header.split()[:5] == ["DLQ#", "ID", "GROUP", "ATTEMPTS", "REASON"]
    assert row.split()[1:5] == [msg_id, "workers", "1", "nacked"]
    assert row.endswith(long_text)  # piped: the whole message, literally
    (letter,) = json_lines(linemq(port, "dlq", "list", "dead", "--count", "1", "--json"))
    assert (letter["id"], letter["msg"], letter["replayed"]) == (msg_id, long_text, None)

    nope = linemq(port, "dlq", "replay", "dead", "--id", "nope")
    assert (nope.exit_code, nope.stdout) == (1, "")
    assert nope.stderr == "ERR dead letter nope not found in dead.dlq\n"
    mixed = linemq(port, "dlq", "replay", "dead", "--id", msg_id, "--id", "nope", "--json")
    assert mixed.exit_code == 1 and json.loads(mixed.stdout) == {"topic": "dead", "replayed": 1}
    assert ok(linemq(port, "dlq", "replay", "dead", "--all")) == "replayed 0\n"

    refused = linemq(port, "dlq", "purge", "dead")  # not a terminal: --yes is required
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert json_lines(linemq(port, "dlq", "purge", "dead", "--yes", "--json")) == [
        {"topic": "dead", "purged": 1}
    ]
    assert ok(linemq(port, "dlq", "list", "dead")) == "no dead letters for dead\n"
    assert ok(linemq(port, "dlq", "purge", "dead", "-y")) == "purged 0\n"


def test_dlq_list_on_a_terminal_fits_the_screen(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    dead_letter(port, "deadwide", "y" * 300)
    monkeypatch.setattr(cli_output, "is_terminal", lambda: True)
    out = ok(linemq(port, "dlq", "list", "deadwide", env={"COLUMNS": "120"}))
    assert all(len(line) <= 120 for line in out.splitlines())
    assert out.splitlines()[1].rstrip().endswith("…")


def test_stats_piped_is_plain_and_never_cut(port: int) -> None:
    topic = "wide." + "w" * 150
    publish(port, topic, "x")
    out = ok(linemq(port, "stats", topic))
    assert "\x1b" not in out
    (row,) = [line for line in out.splitlines() if line.startswith(topic)]
    assert len(row) > 150 and row == row.rstrip()
    assert ok(linemq(port, "stats", topic, "--json")).count("\n") == 1


def test_stats_watch_piped_writes_each_snapshot_as_it_comes(port: int) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "linemq.clients.cli",
            "stats",
            "--watch",
            "0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    try:
        assert proc.stdout is not None
        broker_lines = []
        while len(broker_lines) < 3:  # three snapshots read while it is still running
            line = proc.stdout.readline().decode()
            assert line, proc.stderr.read() if proc.stderr else ""
            assert "\x1b" not in line
            if line.startswith("broker "):
                broker_lines.append(line)
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)


def test_seek_json(port: int) -> None:
    publish(port, "sought", "a", "b")
    ok(linemq(port, "sub", "sought", "-g", "g", "--from", "earliest", "-n", "1"))
    out = json_lines(linemq(port, "seek", "sought", "g", "earliest", "--json"))
    assert out == [{"topic": "sought", "group": "g", "offset": 1}]


def test_shell_completion_is_clicks(port: int) -> None:
    script = CliRunner().invoke(
        main, [], prog_name="linemq", env={"_LINEMQ_COMPLETE": "bash_source"}
    )
    assert script.exit_code == 0 and "_linemq_completion" in script.stdout
    env = {"_LINEMQ_COMPLETE": "bash_complete", "COMP_WORDS": "linemq dl", "COMP_CWORD": "1"}
    words = CliRunner().invoke(main, [], prog_name="linemq", env=env)
    assert "plain,dlq" in words.stdout.splitlines()
