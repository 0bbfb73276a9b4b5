"""How rounds of the suite become one table: medians per system, ratios per round."""

from __future__ import annotations

import json

from linemq.tools.bench.report import combine, document, round_ratios, table
from linemq.tools.bench.suite import Options, SuiteResult

MACHINE = {"nproc": "2", "cpu": "test CPU", "ram": "1 GiB"}


def _round(linemq_rtt: float, redis_rtt: float, linemq_rate: float) -> list[SuiteResult]:
    return [
        SuiteResult("linemq", {"rtt_p50_us": linemq_rtt, "publish_rate": linemq_rate}),
        SuiteResult("redis", {"rtt_p50_us": redis_rtt, "publish_rate": 100.0}),
    ]


def test_ratios_pair_the_systems_of_one_round() -> None:
    # A slow second round doubles both sides: per-round ratios do not move.
    rounds = [_round(110, 100, 50), _round(220, 200, 60), _round(121, 110, 70)]
    ratios = round_ratios(rounds)["redis"]
    assert [round(q, 3) for q in ratios["rtt_p50_us"]] == [1.1, 1.1, 1.1]
    assert ratios["publish_rate"] == [0.5, 0.6, 0.7]
    merged = {r.system: r.metrics for r in combine(rounds)}
    assert merged["linemq"] == {"rtt_p50_us": 121, "publish_rate": 60}
    assert merged["redis"]["rtt_p50_us"] == 110


def test_table_shows_the_median_ratio_and_its_range() -> None:
    rounds = [_round(110, 100, 50), _round(220, 200, 60), _round(130, 100, 70)]
    text = table(rounds, Options(), "test", MACHINE)
    rtt_row = next(line for line in text.splitlines() if line.startswith("publish RTT p50"))
    assert rtt_row.split()[-3:] == ["1.10", "(lo)", "1.10-1.30"]
    assert "3 rounds, systems alternating" in text


def test_one_round_reads_as_before() -> None:
    text = table([_round(110, 100, 50)], Options(), "test", MACHINE)
    rtt_row = next(line for line in text.splitlines() if line.startswith("publish RTT p50"))
    assert rtt_row.split()[-2:] == ["1.10", "(lo)"]
    assert "rounds" not in text


def test_the_json_document_of_a_pinned_run_is_json() -> None:
    """``--pin --json``: the load generator's CPUs (a frozenset) are written as a list."""
    opts = Options(loadgen_cpus=frozenset({1}))
    rounds = [[SuiteResult("linemq", {"publish_rate": 1.0})]]
    doc = document(rounds, opts, "loadgen", {"cpu": "x"}, {})
    assert json.loads(json.dumps(doc))["options"]["loadgen_cpus"] == [1]
