"""``POLICY <topic>``: the delivery policy a topic's groups use, encoded and parsed.

Kept apart from ``clients/protocol.py`` like the other lookups; ``Client.policy``
sends it and ``linemq policy`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass

from linemq.broker.protocol.durations import parse_duration
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


def encode_policy(topic: str) -> bytes:
    return f"POLICY {check_name(topic)}\n".encode()


def to_topic_policy(lines: list[PolicyLine]) -> TopicPolicy:
    if len(lines) != 1:
        raise ProtocolError(f"POLICY reply with {len(lines)} POLICY lines")
    line = lines[0]
    f = line.fields
    try:
        return TopicPolicy(
            line.topic,
            int(f["max_retries"]),
            f["backoff"],
            parse_duration(f["ack_timeout"]),
            int(f["max_inflight"]),
            f["source"],
        )
    except (KeyError, ValueError) as exc:
        raise ProtocolError(f"malformed POLICY line ({exc}): {f!r}") from None
