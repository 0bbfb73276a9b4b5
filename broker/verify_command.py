"""``linemq verify``: an offline check of a data dir, and the repairs a start-up would make.

Like Kafka's log dump or ``nats stream`` checks, it reads every segment, index and
journal of a stopped broker's data dir and lists what is damaged, where. It changes
nothing unless asked with ``--repair``, which runs the broker's own recovery code,
so it does exactly what the next ``linemq serve`` would do, and says what it did.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import click

from linemq.broker.journal_verify import repair_journals, verify_journals
from linemq.broker.storage.damage import Damage
from linemq.broker.storage.verify import repair_topics, verify_topics

# What is checked, in order: each finds damage (reading only) and repairs it.
CHECKS: list[tuple[str, Callable[[Path], list[Damage]], Callable[[Path], list[str]]]] = [
    ("topic logs", verify_topics, repair_topics),
    ("journals", verify_journals, repair_journals),
]


def _where(d: Damage) -> str:
    at = f"{d.path}" + (f" byte {d.position}" if d.position >= 0 else "")
    what = [d.kind]
    if d.topic is not None:
        what.append(f"topic {d.topic}")
    if d.group is not None:
        what.append(f"group {d.group}")
    if d.first is not None:
        span = d.first if d.last in (None, d.first) else f"{d.first}..{d.last}"
        what.append(f"offset {span}")
    reason = f": {d.reason}" if d.reason else ""
    return f"{at}: {', '.join(what)}{reason}"


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("data"),
    show_default=True,
    envvar="LINEMQ_DATA_DIR",
    help="The data dir of a stopped broker.",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Also make the repairs a start-up would (cut torn tails, rebuild indexes, ...) "
    "and say what changed. Stop the broker first.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per damaged place.")
def verify(data_dir: Path, repair: bool, as_json: bool) -> None:
    """Check every segment, index and journal of DATA_DIR; exit 1 if anything is damaged.

    Nothing is changed unless --repair is given. Damage a start-up cannot mend (a record
    that fails its check) stays listed after --repair: the broker skips and reports it.
    """
    found: list[Damage] = []
    for _, check, _ in CHECKS:
        found += check(data_dir)
    for d in found:
        if as_json:
            click.echo(json.dumps(d.describe()))
        else:
            click.echo(_where(d))
    if repair:
        for name, _, mend in CHECKS:
            for change in mend(data_dir):
                click.echo(f"repaired ({name}): {change}", err=as_json)
    if not as_json:
        kinds = Counter(d.kind for d in found)
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "no damage"
        click.echo(f"{data_dir}: {summary}")
    sys.exit(1 if found else 0)
