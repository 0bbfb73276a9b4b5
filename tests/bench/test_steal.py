"""Steal time from /proc/stat: what the bench reports beside each system's figures."""

from __future__ import annotations

from pathlib import Path

from linemq.tools.bench.report import steal_notes, table
from linemq.tools.bench.steal import CpuTimes, parse_stat, sample, stolen_percent
from linemq.tools.bench.suite import Options, SuiteResult

STAT = """cpu  100 5 50 800 10 0 5 30 7 0
cpu0 50 2 25 400 5 0 2 15 0 0
intr 12345
"""


def test_the_aggregate_line_gives_all_time_and_steal_without_guest_time() -> None:
    # user nice system idle iowait irq softirq steal: guest (7) is already inside user
    assert parse_stat(STAT) == CpuTimes(total=1000, steal=30)


def test_a_file_without_a_cpu_line_or_a_steal_field_gives_nothing() -> None:
    assert parse_stat("intr 1\n") is None
    assert parse_stat("cpu  1 2 3 4\n") is None


def test_stolen_share_is_the_steal_between_two_samples_over_all_time() -> None:
    before, after = CpuTimes(1000, 30), CpuTimes(1400, 130)
    assert stolen_percent(before, after) == 25.0
    assert stolen_percent(before, before) is None  # no time passed
    assert stolen_percent(None, after) is None


def test_sample_reads_a_stat_file_and_tolerates_its_absence(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(STAT)
    assert sample(stat) == CpuTimes(1000, 30)
    assert sample(tmp_path / "missing") is None


def test_the_table_shows_steal_without_a_ratio() -> None:
    rounds = [
        [
            SuiteResult("linemq", {"rtt_p50_us": 110.0, "steal_pct": 31.5}),
            SuiteResult("redis", {"rtt_p50_us": 100.0, "steal_pct": 2.0}),
        ]
    ]
    text = table(rounds, Options(), "test", {"nproc": "2", "cpu": "c", "ram": "1 GiB"})
    row = next(line for line in text.splitlines() if line.startswith("CPU stolen by the host"))
    assert row.split()[-3:] == ["31.5", "2.0", "-"]
    assert "hypervisor" in text


def test_rounds_where_the_host_took_much_of_the_cpu_are_flagged() -> None:
    quiet = {"rtt_p50_us": 100.0, "steal_pct": 1.0, "rtt_steal_pct": 2.0}
    busy = {"rtt_p50_us": 150.0, "steal_pct": 8.0, "rtt_steal_pct": 24.0}
    rounds = [
        [SuiteResult("linemq", dict(quiet)), SuiteResult("redis", dict(quiet))],
        [SuiteResult("linemq", dict(busy)), SuiteResult("redis", dict(quiet))],
    ]
    assert steal_notes(rounds) == [
        "round 2: the host stole 8% of the CPU during linemq's workloads (24% in its "
        "window-1 run): its figures, and ratios with it, are slowed by the host"
    ]
    text = table(rounds, Options(), "test", {"nproc": "2", "cpu": "c", "ram": "1 GiB"})
    assert "note: round 2: the host stole 8%" in text
    assert steal_notes(rounds[:1]) == []
