"""Per-topic delivery policies (``--topic-policy``, parsed in config.py): pure resolution.

A rule is a pattern (NATS-style ``*`` and ``>``, as ``--topic-retention`` and
subscribe permissions) with some of ``max_retries``, ``backoff``, ``ack_timeout``
and ``max_inflight``; a setting the rule leaves out is the broker-wide flag's.

When several patterns match a topic, the most specific one wins, by
``specificity``: more literal tokens first, then more tokens, then a pattern
without a trailing ``>`` over one with it; a tie goes to the rule given first.
So ``orders.eu`` beats ``orders.*``, which beats ``orders.>``, which beats ``>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from linemq.broker.config import BackoffSetting, TopicPolicy
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
    )


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


def describe(policy: DeliveryPolicy) -> dict[str, str]:
    """The ``POLICY`` reply's fields, in order."""
    return {
        "max_retries": str(policy.retry.max_retries),
        "backoff": format_backoff(policy.retry.backoff),
        "ack_timeout": format_duration(policy.ack_timeout),
        "max_inflight": str(policy.max_inflight),
        "source": policy.source,
    }
