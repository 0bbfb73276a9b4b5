"""A group's own settings as its journal keeps them: the ordering, and the policy settings
given with ``POLICY <topic> <group>`` (lifecycle.py journals and replays them).

What a line or a snapshot says is checked as the command that set it checked it,
so a damaged setting is refused (the line is lost), never half applied.
"""

from __future__ import annotations

from typing import Final

from linemq.broker.config import POLICY_KEYS, parse_policy_value

ORDERING_WRITTEN: Final = {"key": "key", "fifo": "fifo", "none": "unkeyed"}
"""How an ordering is journaled. Before ``key`` had a name, ``none`` was the name of
what is now ``key`` (keys held): a journal's ``none`` still means that, so the
ordering without key holds is written under a name of its own."""
ORDERING_READ: Final = {"key": "key", "none": "key", "fifo": "fifo", "unkeyed": "none"}


def ordering_read(value: object) -> str:
    if not isinstance(value, str) or value not in ORDERING_READ:
        raise ValueError(f"ordering {value!r}")
    return ORDERING_READ[value]


def overrides_read(value: object) -> dict[str, str]:
    """A ``pol`` line's or snapshot's settings, each checked as ``POLICY`` checked it."""
    if not isinstance(value, dict):
        raise ValueError(f"policy {value!r}")
    for key, text in value.items():
        if key not in POLICY_KEYS or key == "ordering" or not isinstance(text, str):
            raise ValueError(f"policy setting {key!r}")
        if not (key == "rate" and text == "none"):
            parse_policy_value(key, text)
    return dict(value)
