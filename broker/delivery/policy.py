"""Per-topic delivery policies (``--topic-policy``, parsed in config.py): pure resolution.

A rule is a pattern (NATS-style ``*`` and ``>``, as ``--topic-retention`` and
subscribe permissions) with some of ``max_retries``, ``backoff``, ``ack_timeout``,
``max_inflight``, ``ordering``, ``rate`` and ``nack_backoff``; a setting the rule
leaves out is the broker-wide flag's (or the built-in default: ``ordering`` key, no
rate, ``nack_backoff`` on).

A group may override settings at runtime (``POLICY <topic> <group> key=value``):
``with_overrides`` lays them over its topic's policy.

When several patterns match a topic, the most specific one wins, by
``specificity``: more literal tokens first, then more tokens, then a pattern
without a trailing ``>`` over one with it; a tie goes to the rule given first.
So ``orders.eu`` beats ``orders.*``, which beats ``orders.>``, which beats ``>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from linemq.broker.config import BackoffSetting, RateSetting, TopicPolicy, parse_policy_value
from linemq.broker.delivery.backoff import Backoff, ExponentialBackoff, FixedBackoff, RetryPolicy
from linemq.broker.protocol.names import topic_matches

DEFAULT_SOURCE: Final = "default"


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """What every group of a topic uses; ``source`` is the winning pattern or ``default``."""

    retry: RetryPolicy
    ack_timeout: float
    max_inflight: int
    source: str = DEFAULT_SOURCE
    ordering: str = "key"
    """What a new group of the topic gets (a group keeps its own, in its journal)."""
    rate: RateSetting | None = None
    nack_backoff: bool = True
    """A bare ``NACK`` waits the retry backoff (off: it redelivers at once)."""


def specificity(pattern: str) -> tuple[int, int, bool]:
    tokens = pattern.split(".")
    literal = sum(1 for t in tokens if t not in ("*", ">"))
    return literal, len(tokens), tokens[-1] != ">"


def resolve(rules: tuple[TopicPolicy, ...], default: DeliveryPolicy, topic: str) -> DeliveryPolicy:
    best: TopicPolicy | None = None
    for rule in rules:  # strictly greater: the first of equally specific rules wins
        if topic_matches(rule.pattern, topic) and (
            best is None or specificity(rule.pattern) > specificity(best.pattern)
        ):
            best = rule
    if best is None:
        return default
    retry = default.retry
    return DeliveryPolicy(
        RetryPolicy(
            retry.max_retries if best.max_retries is None else best.max_retries,
            retry.backoff if best.backoff is None else to_backoff(best.backoff),
        ),
        default.ack_timeout if best.ack_timeout is None else best.ack_timeout,
        default.max_inflight if best.max_inflight is None else best.max_inflight,
        best.pattern,
        default.ordering if best.ordering is None else best.ordering,
        default.rate if best.rate is None else best.rate,
        default.nack_backoff if best.nack_backoff is None else best.nack_backoff,
    )


def with_overrides(policy: DeliveryPolicy, overrides: Mapping[str, str]) -> DeliveryPolicy:
    """A group's settings (``POLICY <topic> <group> key=value``, kept as the text given)
    over its topic's policy; ``ordering`` is the group's own state, not an override.
    Raises ValueError for a setting that does not parse."""
    if not overrides:
        return policy
    retry = policy.retry
    fields: dict[str, object] = {}
    for key, text in overrides.items():
        if key == "rate" and text == "none":  # no rate for this group, whatever its topic's
            fields["rate"] = None
            continue
        value = parse_policy_value(key, text)
        if key == "max_retries":
            assert isinstance(value, int)
            retry = RetryPolicy(value, retry.backoff)
        elif key == "backoff":
            assert isinstance(value, BackoffSetting)
            retry = RetryPolicy(retry.max_retries, to_backoff(value))
        elif key != "ordering":
            fields[key] = value
    return replace(policy, retry=retry, **fields)  # type: ignore[arg-type]  # checked per key


def to_backoff(setting: BackoffSetting) -> Backoff:
    if setting.kind == "fixed":
        return FixedBackoff(setting.base)
    return ExponentialBackoff(setting.base, setting.cap)


def format_duration(seconds: float) -> str:
    """A whole number of the largest unit that fits, in the duration syntax: ``2s``,
    ``5m``, ``1500ms``; seconds with a fraction for what no unit divides."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    ms = round(seconds * 1000, 6)  # 0.7 s is 700.0000000000001 ms in floats
    if ms == int(ms):
        return f"{int(ms)}ms"
    return f"{seconds:g}s"


def format_backoff(backoff: Backoff) -> str:
    if isinstance(backoff, FixedBackoff):
        return f"fixed:{format_duration(backoff.delay)}"
    return f"exponential:{format_duration(backoff.base)}:{format_duration(backoff.cap)}"


def format_rate(rate: RateSetting | None) -> str:
    if rate is None:
        return "none"
    return f"{rate.count}/{format_duration(rate.period)}"


def settings(policy: DeliveryPolicy, ordering: str | None = None) -> dict[str, str]:
    """Every setting as its text (``GROUP`` lines append these); ``ordering``: a group's own."""
    return {
        "max_retries": str(policy.retry.max_retries),
        "backoff": format_backoff(policy.retry.backoff),
        "ack_timeout": format_duration(policy.ack_timeout),
        "max_inflight": str(policy.max_inflight),
        "ordering": policy.ordering if ordering is None else ordering,
        "rate": format_rate(policy.rate),
        "nack_backoff": "on" if policy.nack_backoff else "off",
    }


def describe(policy: DeliveryPolicy) -> dict[str, str]:
    """The ``POLICY <topic>`` reply's fields, in order (the keys after ``source`` came later)."""
    fields = settings(policy)
    head = {k: fields.pop(k) for k in ("max_retries", "backoff", "ack_timeout", "max_inflight")}
    return {**head, "source": policy.source, **fields}
