"""Crash torture: kill -9 a real broker again and again while clients publish and consume.

Each cycle starts ``python -m broker`` on the same data directory, checks what it
recovered against what the clients were promised, runs pipelined publishers and a
consumer group for a random while, and kills the broker with SIGKILL. Some cycles
then damage the files the way a crash or a bad disk would (a torn record at the
tail of the last segment, junk after a group journal) before the next start-up
has to repair them; with ``corrupt`` (disk.py) they flip bytes in stored records and
journals and cut tails off instead, as a bad sector or a power loss would. A last
phase without kills drains the group so that every stored message is shown to have
been delivered. Only 127.0.0.1 is used.
"""

from linemq.tools.torture.cli import torture
from linemq.tools.torture.clients import corrupt
from linemq.tools.torture.model import CycleResult, TortureReport
from linemq.tools.torture.runner import run_torture

__all__ = ["CycleResult", "TortureReport", "corrupt", "run_torture", "torture"]
