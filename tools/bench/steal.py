"""CPU time the hypervisor took from this machine while a workload ran (``steal`` in top).

On a shared VM the host runs other guests on our cores; while it does, every system
under test gets slower, and the one that needs more CPU per request gets slower
most, so a ratio measured then says as much about the host as about the brokers.
The bench records the share of machine time stolen during each workload so a reader
can tell such runs apart. Linux only: elsewhere there is nothing to read and no row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """All CPUs' time so far, in clock ticks: every state summed, and steal alone."""

    total: int
    steal: int


def parse_stat(text: str) -> CpuTimes | None:
    """The aggregate ``cpu`` line of /proc/stat (guest time is already in user and nice)."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(f) for f in fields[1:9]]  # user .. steal; guest fields excluded
            if len(ticks) < 8:
                return None
            return CpuTimes(sum(ticks), ticks[7])
    return None


def sample(path: Path = PROC_STAT) -> CpuTimes | None:
    try:
        return parse_stat(path.read_text())
    except OSError:
        return None


def stolen_percent(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """Share of all CPUs' time between two samples that the host took, in percent."""
    if before is None or after is None or after.total <= before.total:
        return None
    return 100 * (after.steal - before.steal) / (after.total - before.total)
