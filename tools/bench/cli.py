"""``linemq bench``: start the systems, run the suite against each, print the table."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from linemq.tools.bench.runner import Progress
    from linemq.tools.bench.servers import Server
    from linemq.tools.bench.suite import Options, SuiteResult

# The bench modules are imported when the command runs: `linemq serve` loads this file too,
# and its start-up time is one of the things measured.

PEERS = ("redis", "nats")
DEFAULT_BROKER_ARGS = ["--max-inflight", "256"]


SWEEPABLE = ("topics", "groups", "subscribers", "size")


class IntList(click.ParamType[tuple[int, ...]]):
    """``N`` or ``N,M,...``: one value runs the suite with it, a list sweeps over it."""

    name = "N[,N...]"

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        out = []
        for part in str(value).split(","):
            try:
                n = int(part.strip().replace("_", ""))
            except ValueError:
                self.fail(f"{part.strip()!r} is not a whole number", param, ctx)
            if n < self.minimum:
                self.fail(f"{n} is below {self.minimum}", param, ctx)
            out.append(n)
        return tuple(out)


def _sweep(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    for n in names:
        if n not in SWEEPABLE:
            raise click.BadParameter(f"cannot sweep {n!r} (choose from {', '.join(SWEEPABLE)})")
    return names


def _compare(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    for n in names:
        if n not in PEERS:
            raise click.BadParameter(f"unknown peer {n!r} (choose from {', '.join(PEERS)})")
    return names


@click.command()
@click.option("--host", default=None, help="Bench a running linemq here instead of starting one.")
@click.option("--port", type=int, default=None, help="Port of the running linemq (with --host).")
@click.option(
    "--conns",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Publishing connections.",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Unacknowledged publishes in flight per connection.",
)
@click.option(
    "--size",
    type=IntList(20),
    default="100",
    show_default=True,
    help="Payload bytes. A comma list sweeps it (pipelined publish).",
)
@click.option(
    "--topics",
    type=IntList(1),
    default="1",
    show_default=True,
    help="Spread the pipelined publish and end-to-end runs over this many topics, each "
    "publish to the next topic (end to end: groups on every topic). A comma list sweeps it.",
)
@click.option(
    "--groups",
    type=IntList(1),
    default="1",
    show_default=True,
    help="Consumer groups on every topic in the end-to-end run, each of --group-members "
    "acking members. A comma list sweeps it.",
)
@click.option(
    "--subscribers",
    type=IntList(0),
    default="0",
    show_default=True,
    help="Plain (fanout) subscribers on every topic: adds a fanout run (0: none). "
    "A comma list sweeps it.",
)
@click.option(
    "--sweep",
    "sweep",
    default="",
    callback=lambda c, p, v: _sweep(v),
    help="Sweep these (topics,groups,subscribers,size) over their comma list or a default "
    "one, one workload per point, instead of the suite.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Messages for the pipelined publish run  [default: 200000; a sweep: 20000 a point]",
)
@click.option(
    "--point-deliveries",
    type=click.IntRange(min=1),
    default=2_000_000,
    show_default=True,
    help="A sweep point runs fewer messages than --count where they would make more "
    "deliveries than this (many groups or subscribers).",
)
@click.option(
    "--point-mb",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="... or more MiB of payload than this (large messages).",
)
@click.option("--plot", type=click.Path(dir_okay=False), help="A sweep: write its plot (SVG) here.")
@click.option("--markdown", is_flag=True, help="A sweep: print the tables as markdown.")
@click.option(
    "--latency-count",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="Round trips for the window-1 latency run.",
)
@click.option(
    "--e2e-count",
    type=click.IntRange(min=1),
    default=None,
    help="Messages for the end-to-end run  [default: --count]",
)
@click.option(
    "--group-members",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Consumer-group members acking in the end-to-end runs.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=10_000.0,
    show_default=True,
    help="Messages per second for publish->deliver latency.",
)
@click.option(
    "--rate-seconds",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="How long the fixed-rate run lasts.",
)
@click.option(
    "--procs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Load-generator processes (each one uvloop, one core).",
)
@click.option(
    "--idle-conns",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Also open this many idle connections and PING each (0: skip).",
)
@click.option(
    "--compare",
    "compare",
    default=None,
    callback=lambda c, p, v: _compare(v),
    help="Also bench these peers if installed: redis,nats  [default: none; a sweep: redis]",
)
@click.option(
    "--broker-arg",
    "broker_args",
    multiple=True,
    help="Extra `linemq serve` argument (repeat), e.g. --broker-arg=--fsync=always.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=120.0,
    show_default=True,
    help="Time limit of each workload in seconds.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run every system this many times, alternating systems; report medians.",
)
@click.option(
    "--pin", is_flag=True, help="Pin servers to CPU 0 and the load generator to the other CPUs."
)
@click.option("--no-restart", is_flag=True, help="Skip the restart timing.")
@click.option("--keep", is_flag=True, help="Keep the temporary data dirs and logs.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", is_flag=True, help="No progress line.")
def bench(**o: Any) -> None:
    """Measure linemq: publish throughput and latency, end to end, memory, restart.

    With --sweep or a comma list (--topics 1,10,100), instead: cost per message against
    topics, groups, subscribers or payload size, next to Redis, as a table and a plot.
    """
    from linemq.tools.bench.report import document, table
    from linemq.tools.bench.runner import Progress
    from linemq.tools.bench.servers import (
        BINARIES,
        Server,
        Servers,
        available,
        machine,
        pin_split,
        raise_fd_limit,
        terminate_on_sigterm,
    )
    from linemq.tools.bench.suite import Options

    terminate_on_sigterm()
    server_cpus, loadgen_cpus = pin_split() if o["pin"] else (None, None)
    swept = list(dict.fromkeys([*o["sweep"], *(k for k in SWEEPABLE if len(o[k]) > 1)]))
    if swept:
        from linemq.tools.bench.sweep_cli import run

        run(o, swept, DEFAULT_BROKER_ARGS, server_cpus, loadgen_cpus)
        return
    if o["plot"] or o["markdown"]:
        raise click.UsageError("--plot and --markdown go with a sweep (--sweep or a comma list)")
    opts = Options(
        conns=o["conns"],
        window=o["window"],
        size=o["size"][0],
        count=o["count"] or 200_000,
        latency_count=o["latency_count"],
        e2e_count=o["e2e_count"] or o["count"] or 200_000,
        group_members=o["group_members"],
        rate=o["rate"],
        rate_seconds=o["rate_seconds"],
        procs=o["procs"],
        timeout=o["timeout"],
        idle_conns=o["idle_conns"],
        restart=not o["no_restart"] and o["host"] is None,
        loadgen_cpus=frozenset(loadgen_cpus) if loadgen_cpus else None,
        topics=o["topics"][0],
        groups=o["groups"][0],
        subscribers=o["subscribers"][0],
    )
    if opts.idle_conns:
        raise_fd_limit(2 * opts.idle_conns + 1024)
    progress = Progress(enabled=not o["quiet"])
    loadgen = (
        f"{opts.procs} process(es) x uvloop, raw sockets, "
        f"Python {sys.version.split()[0]}, on the same machine as the servers"
    )
    if server_cpus and loadgen_cpus:
        loadgen += f"; servers pinned to CPU {sorted(server_cpus)}, load generator to "
        loadgen += f"CPU {sorted(loadgen_cpus)}"
    skipped: dict[str, str] = {}
    for peer in o["compare"] or []:
        if not available(peer):
            skipped[peer] = f"{BINARIES[peer]} not installed"
            progress.done(f"  {peer}: skipped ({skipped[peer]})")
    peers = [p for p in o["compare"] or [] if p not in skipped]
    rounds: list[list[SuiteResult]] = []
    try:
        with Servers(keep=o["keep"], cpus=server_cpus) as servers:
            for n in range(o["rounds"]):
                if o["rounds"] > 1:
                    progress.done(f"round {n + 1} of {o['rounds']}")
                results: list[SuiteResult] = []
                if o["host"] is not None:
                    if o["port"] is None:
                        raise click.UsageError("--host needs --port")
                    target = Server(
                        "linemq", servers.root, servers.root / "none.log", [], o["port"]
                    )
                    results.append(_run_external(target, o["host"], opts, progress))
                else:
                    args = [*DEFAULT_BROKER_ARGS, *o["broker_args"]]
                    results.append(_run(servers.start("linemq", args), opts, progress))
                for peer in peers:
                    results.append(_run(servers.start(peer, []), opts, progress))
                    results[-1].system = peer
                rounds.append(results)
            if o["keep"]:
                progress.done(f"  data and logs kept in {servers.root}")
    except KeyboardInterrupt:
        click.echo("\ninterrupted: servers stopped, temporary dirs removed", err=True)
        sys.exit(130)
    if o["as_json"]:
        click.echo(json.dumps(document(rounds, opts, loadgen, machine(), skipped), indent=2))
    else:
        click.echo(table(rounds, opts, loadgen, machine()))
        for peer, why in skipped.items():
            click.echo(f"note: {peer} skipped: {why}")


def _run_external(target: Server, host: str, opts: Options, progress: Progress) -> SuiteResult:
    """A broker someone else started: no pid here, so no RSS, and no restart."""
    if host not in ("127.0.0.1", "localhost"):
        raise click.UsageError("bench only talks to 127.0.0.1")
    result = _run(target, opts, progress)
    result.notes.append("linemq was started elsewhere: RSS not measured")
    return result


def _run(server: Server, opts: Options, progress: Progress) -> SuiteResult:
    """The suite against one server, stopped afterwards: the next system runs alone."""
    from linemq.tools.bench.suite import run_suite

    try:
        return run_suite(server, opts, progress)
    finally:
        server.stop()
