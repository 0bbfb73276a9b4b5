"""The crash torture, short: a few kill -9 cycles (one with damaged files) and a final drain."""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path

from click.testing import CliRunner

from linemq.broker.cli import main
from linemq.tools.torture import CycleResult, corrupt, run_torture
from linemq.tools.torture.disk import Destroyed, DiskDamage, damage_disk, unreported


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


def _segment(base: int, texts: list[str]) -> bytes:
    header = json.dumps({"linemq_segment": 1, "base_offset": base}) + "\n"
    lines = [
        json.dumps({"id": f"msg_{o}", "offset": o, "ts": 1.0, "msg": t}) + "\n"
        for o, t in enumerate(texts, start=base)
    ]
    return (header + "".join(lines)).encode()


def test_disk_damage_knows_which_records_it_destroyed(tmp_path: Path) -> None:
    topic = tmp_path / "topics" / "torture"
    topic.mkdir(parents=True)
    sealed = _segment(1, [f"s{i}" for i in range(1, 51)])
    live = _segment(51, [f"l{i}" for i in range(51, 101)])
    (topic / f"{1:020d}.log").write_bytes(sealed)
    (topic / f"{51:020d}.log").write_bytes(live)
    for seed in range(20):
        (topic / f"{1:020d}.log").write_bytes(sealed)
        (topic / f"{51:020d}.log").write_bytes(live)
        done = damage_disk(tmp_path, random.Random(seed), "segment")
        after = (topic / f"{1:020d}.log").read_bytes()
        changed = [i for i, (a, b) in enumerate(zip(sealed, after, strict=True)) if a != b]
        assert sorted(set(changed)) == sorted(set(done.flipped[topic / f"{1:020d}.log"]))
        hit = {r.offset for r in done.records if not r.cut}
        for line in after.splitlines()[1:]:  # every record left intact was not counted as hit
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if rec in [json.loads(x) for x in sealed.splitlines()[1:]]:
                    assert rec["offset"] not in hit
        cut = done.cut[topic / f"{51:020d}.log"]
        kept = (topic / f"{51:020d}.log").read_bytes()
        assert len(kept) == len(live) - cut
        whole = {json.loads(x)["offset"] for x in kept.splitlines()[1:] if x.endswith(b"}")}
        lost = {r.offset for r in done.records if r.cut}
        assert whole | lost == set(range(51, 101))  # what the cut left whole, or destroyed


def test_disk_damage_hits_the_group_journal_only_on_journal_cycles(tmp_path: Path) -> None:
    journal = tmp_path / "groups" / "torture" / "workers.journal"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(b'{"e":"start","o":1}\n' * 40)
    topic = tmp_path / "topics" / "torture"
    topic.mkdir(parents=True)
    (topic / f"{1:020d}.log").write_bytes(_segment(1, ["a", "b"]))
    done = damage_disk(tmp_path, random.Random(2), "journal")
    assert done.kind == "journal" and (done.flipped or done.cut) and not done.records
    assert (topic / f"{1:020d}.log").read_bytes() == _segment(1, ["a", "b"])
    assert journal.read_bytes() != b'{"e":"start","o":1}\n' * 40


def test_unreported_damage_is_listed() -> None:
    seg = Path("/d/topics/torture/00000000000000000001.log")
    done = DiskDamage("segment", [Destroyed(7, "x")], {seg: [100]})
    assert unreported(done, []) == [
        f"bytes flipped in {seg.name} but no damage reported for it",
        "offset 7 damaged but not reported as lost",
    ]
    report = {"event": "storage_damage", "kind": "record", "path": str(seg), "first": 7, "last": 7}
    assert unreported(done, [report]) == []


def test_disk_mode_torture_serves_no_damaged_record_and_reuses_no_offset(tmp_path: Path) -> None:
    report = run_torture(
        tmp_path / "data",
        cycles=4,
        conns=2,
        seed=11,
        kill_after=(0.4, 0.6),
        corrupt=True,
        max_messages=12_000,
        segment_bytes=32 * 1024,
        drain_timeout=10.0,
    )
    assert report.violations == []
    assert report.ok and report.drained
    assert report.published > 0
