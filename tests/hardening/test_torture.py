"""The crash torture, short: a few kill -9 cycles (one with damaged files) and a final drain."""

from __future__ import annotations

import random
import time
from pathlib import Path

from click.testing import CliRunner

from broker.cli import main
from broker.torture import CycleResult, corrupt, run_torture


def test_three_kill9_cycles_with_corruption_keep_every_promise(tmp_path: Path) -> None:
    seen: list[CycleResult] = []
    started = time.monotonic()
    report = run_torture(
        tmp_path / "data",
        cycles=3,
        conns=3,
        seed=7,
        kill_after=(0.3, 0.6),
        corrupt_every=2,
        max_messages=15_000,
        segment_bytes=64 * 1024,
        drain_timeout=10.0,
        on_cycle=seen.append,
    )
    assert report.violations == []
    assert report.ok and report.drained
    assert [c.cycle for c in seen] == [1, 2, 3, 0]
    assert seen[1].corrupted == "segment+journal"
    assert report.published > 0 and report.stored >= report.published
    assert time.monotonic() - started < 20


def test_corruption_appends_junk_to_the_last_segment_and_the_journal(tmp_path: Path) -> None:
    topic = tmp_path / "topics" / "torture"
    topic.mkdir(parents=True)
    (topic / f"{1:020d}.log").write_bytes(b"first\n")
    (topic / f"{5:020d}.log").write_bytes(b"last\n")
    journal = tmp_path / "groups" / "torture" / "workers.journal"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(b"{}\n")
    damage = corrupt(tmp_path, random.Random(1))
    assert set(damage) == {"segment", "journal"}
    assert (topic / f"{1:020d}.log").read_bytes() == b"first\n"
    assert len((topic / f"{5:020d}.log").read_bytes()) == 5 + damage["segment"]
    assert len(journal.read_bytes()) == 3 + damage["journal"]


def test_torture_command_prints_a_line_per_cycle_and_a_verdict() -> None:
    result = CliRunner().invoke(
        main,
        ["torture", "--cycles", "1", "--conns", "1", "--seed", "3", "--kill-after", "0.2", "0.3"],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "linemq torture: seed 3, 1 cycles"
    assert lines[1].startswith("cycle   1/1: published") and lines[1].endswith("ok")
    assert lines[2].startswith("drain: ")
    assert lines[3].startswith("PASS: 1 cycles")
