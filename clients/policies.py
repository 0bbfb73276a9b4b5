"""``POLICY``: the delivery policy a topic's groups use, and one group's own, encoded and parsed.

Kept apart from ``clients/protocol.py`` like the other lookups; ``Client.policy``,
``Client.group_policy`` and ``Client.set_group_policy`` send them and ``linemq policy``
prints them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from linemq.broker.protocol.durations import parse_duration, to_seconds
from linemq.clients.errors import ProtocolError
from linemq.clients.protocol import check_name
from linemq.clients.replies import PolicyLine


@dataclass(frozen=True, slots=True)
class TopicPolicy:
    """``backoff`` is as the broker writes it (``exponential:2s:5m``, ``fixed:5s``);
    ``source`` is the ``--topic-policy`` pattern that set it, or ``default``."""

    topic: str
    max_retries: int
    backoff: str
    ack_timeout: float
    max_inflight: int
    source: str
    ordering: str = "key"
    """What a new group of the topic gets: ``none``, ``key`` or ``fifo``."""
    rate: str | None = None
    """``100/1s``: at most 100 deliveries a second per group; None: no limit."""
    nack_backoff: bool = False
    """A bare NACK waits the backoff (a broker without the key redelivers it at once)."""


@dataclass(frozen=True, slots=True)
class GroupPolicy(TopicPolicy):
    """One group's effective policy; ``source`` is where what it does not set itself comes
    from, and ``overrides`` the settings that are its own."""

    group: str = ""
    overrides: tuple[str, ...] = ()


SETTINGS: Final = (
    "max_retries",
    "backoff",
    "ack_timeout",
    "max_inflight",
    "ordering",
    "rate",
    "nack_backoff",
)
DEFAULT: Final = "default"

SettingValue = str | int | float | bool | timedelta | None
"""A setting for ``set_group_policy``: the wire's text, a number, ``True``/``False`` for
``nack_backoff``, a ``timedelta`` for ``ack_timeout``, or None for ``default`` (clear it)."""


def encode_policy(topic: str, group: str | None = None) -> bytes:
    if group is None:
        return f"POLICY {check_name(topic)}\n".encode()
    return f"POLICY {check_name(topic)} {check_name(group, 'group')}\n".encode()


def encode_set_policy(topic: str, group: str, settings: Mapping[str, SettingValue]) -> bytes:
    """``POLICY <topic> <group> key=value ...``; the broker checks the values, this only
    that each is one word and the keys are known (ValueError)."""
    if not settings:
        raise ValueError("no settings given")
    pairs = []
    for key, value in settings.items():
        if key not in SETTINGS:
            raise ValueError(f"unknown policy setting {key!r} ({', '.join(SETTINGS)})")
        text = _setting_text(key, value)
        if not text or any(c.isspace() or c == "=" for c in text):
            raise ValueError(f"invalid {key} {value!r}")
        pairs.append(f"{key}={text}")
    head = f"POLICY {check_name(topic)} {check_name(group, 'group')}"
    return (" ".join([head, *pairs]) + "\n").encode()


def _setting_text(key: str, value: SettingValue) -> str:
    if value is None:
        return DEFAULT
    if isinstance(value, bool):
        if key != "nack_backoff":
            raise ValueError(f"{key} is not on or off")
        return "on" if value else "off"
    if isinstance(value, timedelta) or (key == "ack_timeout" and not isinstance(value, str)):
        return f"{to_seconds(value, min_seconds=0.001)!r}"
    return str(value)


def to_topic_policy(lines: list[PolicyLine]) -> TopicPolicy:
    if len(lines) != 1:
        raise ProtocolError(f"POLICY reply with {len(lines)} POLICY lines")
    line = lines[0]
    f = line.fields
    try:
        return TopicPolicy(line.topic, *_common(f))
    except (KeyError, ValueError) as exc:
        raise ProtocolError(f"malformed POLICY line ({exc}): {f!r}") from None


def to_group_policy(lines: list[PolicyLine]) -> GroupPolicy:
    if len(lines) != 1 or lines[0].group is None:
        raise ProtocolError(f"POLICY reply with {len(lines)} POLICY lines of a group")
    line = lines[0]
    f = line.fields
    try:
        overrides = f["overrides"]
        return GroupPolicy(
            line.topic,
            *_common(f),
            group=line.group,  # type: ignore[arg-type]  # checked above
            overrides=() if overrides == "none" else tuple(overrides.split(",")),
        )
    except (KeyError, ValueError) as exc:
        raise ProtocolError(f"malformed POLICY line ({exc}): {f!r}") from None


def _common(
    f: Mapping[str, str],
) -> tuple[int, str, float, int, str, str, str | None, bool]:
    """The fields every POLICY line has; those a broker may not send yet keep what a broker
    without them does."""
    rate = f.get("rate", "none")
    return (
        int(f["max_retries"]),
        f["backoff"],
        parse_duration(f["ack_timeout"]),
        int(f["max_inflight"]),
        f["source"],
        f.get("ordering", "key"),
        None if rate == "none" else rate,
        f.get("nack_backoff", "off") == "on",
    )
