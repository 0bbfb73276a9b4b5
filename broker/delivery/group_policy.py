"""``POLICY <topic> <group> [key=value ...]``: a group's own settings over its topic's policy.

A group's settings are journaled in its own journal (a ``pol`` line with all of
them, lifecycle.py), so they are durable before the ``OK``, survive restarts and
go with the group when it is deleted. ``key=default`` clears one. ``ordering``
is the group's own state (set when it was created): it changes only while
nothing is in flight, since a member may hold messages the new order would not
have let out together.
"""

from __future__ import annotations

from collections.abc import Sequence

from linemq.broker.config import ORDERINGS, POLICY_KEYS, parse_policy_value
from linemq.broker.delivery.group import ConsumerGroup

DEFAULT: str = "default"
"""``key=default``: the group takes its topic's setting again."""


class PolicyError(ValueError):
    """A setting that cannot be applied; its text is the ERR reason."""


def describe_group(group: ConsumerGroup) -> dict[str, str]:
    """``POLICY <topic> <group>``'s fields: every setting in force, the pattern (or
    ``default``) its topic's policy comes from, and which settings are the group's own."""
    topic_policy = group.ctx.policy_for(group.topic)
    own = list(group.state.overrides)
    if group.state.ordering != topic_policy.ordering:
        own.append("ordering")
    fields = group.settings()
    fields["source"] = topic_policy.source
    fields["overrides"] = ",".join(k for k in POLICY_KEYS if k in own) or "none"
    return fields


def set_group_policy(group: ConsumerGroup, changes: Sequence[tuple[str, str]]) -> None:
    """Check every change, then journal and apply them together (none if one is bad)."""
    overrides = dict(group.state.overrides)
    ordering = group.state.ordering
    for key, value in changes:
        if key not in POLICY_KEYS:
            raise PolicyError(f"unknown policy setting {key!r} ({', '.join(POLICY_KEYS)})")
        if key == "ordering":
            ordering = group.ctx.policy_for(group.topic).ordering if value == DEFAULT else value
            if ordering not in ORDERINGS:
                raise PolicyError(f"ordering must be none, key or fifo, got {value!r}")
        elif value == DEFAULT:
            overrides.pop(key, None)
        else:
            if not (key == "rate" and value == "none"):
                try:
                    parse_policy_value(key, value)
                except ValueError as e:
                    raise PolicyError(str(e)) from None
            overrides[key] = value
    if ordering != group.state.ordering and group.inflight:
        raise PolicyError(
            f"ordering of group {group.name} on {group.topic} can change only while nothing "
            f"is in flight ({group.inflight} now): PAUSE the group, let it drain, then set it"
        )
    if overrides != group.state.overrides:
        group.state.set_policy(overrides)
        group.apply_policy()
    if ordering != group.state.ordering:
        group.state.set_ordering(ordering)
        group.reorder()
    group.ctx.changed()
