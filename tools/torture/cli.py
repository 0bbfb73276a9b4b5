"""``linemq torture``: run the cycles and print one line each and a verdict."""

from __future__ import annotations

import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from linemq.tools.torture.model import CycleResult
from linemq.tools.torture.runner import run_torture


def _print_cycle(total: int) -> Callable[[CycleResult], None]:
    def show(c: CycleResult) -> None:
        name = "drain" if c.cycle == 0 else f"cycle {c.cycle:>3}/{total}"
        damage = f"  corrupted {c.corrupted}" if c.corrupted else ""
        verdict = "ok" if c.ok else f"{len(c.violations)} VIOLATIONS"
        click.echo(
            f"{name}: published {c.published:>6}  acked {c.acked:>6}  "
            f"stored {c.stored:>6}{damage}  {verdict}"
        )
        for v in c.violations[:20]:
            click.echo(f"    {v}")

    return show


@click.command()
@click.option(
    "--cycles",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many times to kill -9 and restart the broker.",
)
@click.option(
    "--conns",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Publisher connections.",
)
@click.option(
    "--consumers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Members of the consumer group.",
)
@click.option("--seed", type=int, default=None, help="Random seed (default: random, printed).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Broker data directory (default: a temporary one).",
)
@click.option("--keep", is_flag=True, help="Keep the temporary directory and broker logs.")
@click.option(
    "--kill-after",
    type=(float, float),
    default=(0.3, 1.5),
    show_default=True,
    help="Seconds between a start and its kill -9: MIN MAX.",
)
@click.option(
    "--corrupt-every",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Damage the files after every Nth kill (0: never).",
)
@click.option(
    "--corrupt",
    is_flag=True,
    help="Disk mode: between cycles flip random bytes in sealed segments and the group "
    "journal, and cut random tails off the live segment and the journal (instead of "
    "--corrupt-every's torn tails); checks that no damaged content is served, every "
    "undamaged confirmed message is kept, no offset is reused, and all damage is reported.",
)
@click.option(
    "--fsync",
    type=click.Choice(["always", "interval", "never"]),
    default="interval",
    show_default=True,
    help="The broker's --fsync mode under torture.",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Seconds after which no new cycle starts.",
)
def torture(seed: int | None, data_dir: Path | None, keep: bool, **options: Any) -> None:
    """kill -9 a broker repeatedly under load and check every durability promise."""
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 32)
    lo, hi = options["kill_after"]
    if not 0 < lo <= hi:
        raise click.BadParameter("need 0 < MIN <= MAX", param_hint="--kill-after")
    click.echo(f"linemq torture: seed {seed}, {options['cycles']} cycles")
    # SIGTERM cleans up like Ctrl-C: the broker child is killed, temporary files removed.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        report = run_torture(
            data_dir, keep=keep, seed=seed, on_cycle=_print_cycle(options["cycles"]), **options
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    verdict = "PASS" if report.ok else "FAIL"
    click.echo(
        f"{verdict}: {len(report.cycles) - 1} cycles, {report.published} publishes confirmed, "
        f"{report.stored} stored, {report.acked} acks confirmed, "
        f"{len(report.violations)} violations (seed {seed})"
    )
    if keep:
        click.echo(f"data and broker logs kept in {report.workdir}")
    if not report.ok:
        sys.exit(1)
