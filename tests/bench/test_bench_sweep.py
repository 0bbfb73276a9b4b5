"""`linemq bench` sweeps: tiny ones against a real linemq (and Redis where installed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from linemq.tools.bench.cli import bench
from linemq.tools.bench.sweep import PointResult, SweepOptions, plan
from linemq.tools.bench.sweep_report import markdown, text

SVG = "{http://www.w3.org/2000/svg}"
HAVE_REDIS = shutil.which("redis-server") is not None
EVERY_DIMENSION = [
    "--sweep", "topics,groups,subscribers,size", "--topics", "1,3", "--groups", "1,2",
    "--subscribers", "1,3", "--size", "100,5000", "--count", "300", "--group-members", "2",
    "--timeout", "30", "--quiet",
]  # fmt: skip
AXES = ["topics", "groups per topic", "subscribers per topic", "payload bytes"]


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "linemq", "bench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=150, check=False)


def _tables(md: str) -> dict[str, list[list[str]]]:
    """Each markdown table of the output under the axis its bold heading names."""
    tables: dict[str, list[list[str]]] = {}
    name = ""
    for line in md.splitlines():
        if line.startswith("**"):
            name = line[2:].split("**")[0]
            tables[name] = []
        elif line.startswith("| ") and name:
            tables[name].append([c.strip() for c in line.strip("|").split("|")])
    return tables


def _check_sweep(tmp_path: Path, systems: list[str]) -> None:
    plot = tmp_path / "scaling.svg"
    compare = ",".join(s.lower() for s in systems[1:])
    done = _bench(*EVERY_DIMENSION, "--compare", compare, "--markdown", "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    assert f"]({plot})" in done.stdout  # the markdown shows the plot it wrote
    tables = _tables(done.stdout)
    assert list(tables) == AXES
    for axis, (header, *body) in tables.items():
        want = [axis, "messages"] + [f"{s} msg/s" for s in systems]
        want += [f"{s} µs/msg" for s in systems] + [f"linemq/{p}" for p in systems[1:]]
        assert header == want
        assert len(body) == 2  # one row a point
        for row in body:
            rates = [float(c.replace(",", "")) for c in row[2 : 2 + len(systems)]]
            assert all(r > 0 for r in rates), row  # every system measured every point
            if len(systems) > 1:
                assert row[-1].endswith("x")
    notes = [line for line in done.stdout.splitlines() if line.startswith("- ")]
    assert all("the host stole" in n for n in notes), notes  # nothing failed or timed out

    root = ET.parse(plot).getroot()  # valid XML, an SVG with a panel per dimension
    assert root.tag == f"{SVG}svg"
    panels = root.findall(f"{SVG}g[@class='panel']")
    assert [p.get("data-title") for p in panels] == AXES
    for panel in panels:
        series = panel.findall(f"{SVG}g[@class='series']")
        assert [s.get("data-series") for s in series] == systems
        for s in series:
            assert len(s.findall(f"{SVG}circle")) == 2
            assert len(s.find(f"{SVG}polyline").get("points", "").split()) == 2  # type: ignore[union-attr]


@pytest.mark.timeout(150)
def test_sweep_of_every_dimension_prints_tables_and_plots_linemq(tmp_path: Path) -> None:
    _check_sweep(tmp_path, ["linemq"])


@pytest.mark.timeout(150)
@pytest.mark.skipif(not HAVE_REDIS, reason="redis-server not installed")
def test_sweep_compares_every_point_with_redis(tmp_path: Path) -> None:
    _check_sweep(tmp_path, ["linemq", "Redis"])


@pytest.mark.timeout(60)
def test_a_comma_list_sweeps_and_json_has_every_point() -> None:
    done = _bench("--topics", "1,2", "--count", "200", "--compare", "", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    points = doc["points"]
    assert [(p["dimension"], p["value"]) for p in points] == [("topics", 1), ("topics", 2)]
    for p in points:
        assert p["rates"]["linemq"] > 0
        assert p["us_per_msg"]["linemq"] == pytest.approx(1e6 / p["rates"]["linemq"])
        assert p["load"]["count"] == 200
    assert doc["systems"] == ["linemq"]
    assert "load average" in doc["context"][1]  # a loaded machine shows in the figures


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plot", "x.svg"], "--plot and --markdown go with a sweep"),
        (["--sweep", "queues"], "cannot sweep 'queues'"),
        (["--topics", "1,ten"], "'ten' is not a whole number"),
        (["--size", "100,10"], "10 is below 20"),
        (["--subscribers", "0,10"], "a sweep starts at 1 subscriber"),
        (["--sweep", "topics", "--host", "127.0.0.1"], "drop --host"),
    ],
)
def test_bad_sweep_options_are_refused_before_anything_starts(
    args: list[str], message: str
) -> None:
    result = CliRunner().invoke(bench, args)
    assert result.exit_code == 2
    assert message in result.output


def test_points_run_fewer_messages_for_wide_fanout_and_large_payloads() -> None:
    opts = SweepOptions(
        ("subscribers", "size"),
        {"subscribers": (1, 1000), "size": (100, 1_000_000)},
        count=20_000,
        point_deliveries=2_000_000,
        point_mb=256,
    )
    points = {(p.dimension, p.value): p.load for p in plan(opts)}
    assert points["subscribers", 1].count == 20_000
    assert points["subscribers", 1000].count == 2_000  # 2,000,000 deliveries
    assert points["size", 100].count == 20_000
    assert points["size", 100].window == 256
    assert points["size", 1_000_000].count == 268  # 256 MiB of payload
    assert points["size", 1_000_000].window == 4  # 4 MiB in flight a connection


def test_text_table_marks_a_point_a_system_could_not_run() -> None:
    opts = SweepOptions(("topics",), {"topics": (1, 10)}, count=100)
    first, second = plan(opts)
    results = [
        PointResult(first, {"linemq": [200_000.0], "redis": [250_000.0]}, {"redis": [0.8]}),
        PointResult(second, {"redis": [250_000.0]}, notes=["linemq topics=10: timed out"]),
    ]
    lines = text(results, ["linemq", "redis"], opts, ["machine line"]).splitlines()
    assert lines[1].split() == [
        "topics", "messages", "linemq", "msg/s", "Redis", "msg/s",
        "linemq", "µs/msg", "Redis", "µs/msg", "linemq/Redis",
    ]  # fmt: skip
    assert lines[2].split() == ["1", "100", "200,000", "250,000", "5.0", "4.0", "0.80x"]
    assert lines[3].split() == ["10", "100", "-", "250,000", "-", "4.0", "-"]
    assert lines[-2:] == ["machine line", "note: linemq topics=10: timed out"]
    md = markdown(results, ["linemq", "redis"], opts, [], None)
    assert "| 1 | 100 | 200,000 | 250,000 | 5.0 | 4.0 | 0.80x |" in md
    assert md.endswith("- linemq topics=10: timed out")
