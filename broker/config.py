"""One frozen ``Config`` the CLI builds from flags and ``LINEMQ_*`` env; nothing else reads env."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from linemq.broker.protocol.durations import parse_duration
from linemq.broker.protocol.names import is_valid_pattern, topic_matches
from linemq.broker.protocol.sizes import parse_size as parse_size  # the flags read it here

FsyncPolicy = Literal["always", "interval", "never"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class TopicRetention:
    """A retention override for topics matching ``pattern`` (NATS-style ``*`` and ``>``)."""

    pattern: str
    max_bytes: int = 0
    max_age: float = 0.0


def parse_age(text: str) -> float:
    """``3600``, ``90s``, ``15m``, ``12h``, ``7d`` to seconds: the wire's duration syntax
    (``protocol/durations.py``: negative and non-finite values refused)."""
    return parse_duration(text)


def parse_topic_retention(text: str) -> TopicRetention:
    """``orders.*=bytes:1GiB,age:7d`` (either part may be left out; 0 means unlimited)."""
    pattern, sep, spec = text.partition("=")
    if not sep or not pattern:
        raise ValueError(f"expected PATTERN=bytes:SIZE,age:DURATION, got {text!r}")
    max_bytes, max_age = 0, 0.0
    for part in spec.split(","):
        key, _, value = part.partition(":")
        if key.strip() == "bytes":
            max_bytes = parse_size(value)
        elif key.strip() == "age":
            max_age = parse_age(value)
        else:
            raise ValueError(f"unknown retention setting {key!r} in {text!r}")
    return TopicRetention(pattern.strip(), max_bytes, max_age)


TOPIC_POLICY_SPEC: Final = (
    "PATTERN=max_retries:N,backoff:exponential:BASE:MAX|fixed:DELAY,"
    "ack_timeout:DURATION,max_inflight:N,ordering:none|key|fifo,rate:N/DURATION,"
    "nack_backoff:on|off"
)
POLICY_KEYS: Final = (
    "max_retries",
    "backoff",
    "ack_timeout",
    "max_inflight",
    "ordering",
    "rate",
    "nack_backoff",
)
ORDERINGS: Final = ("none", "key", "fifo")
"""``key``: a message's ``key=`` holds its key (what every group did before ``ordering``);
``none``: keys are not held; ``fifo``: one message of the group out at a time."""
MAX_RATE: Final = 1_000_000_000


@dataclass(frozen=True, slots=True)
class BackoffSetting:
    """``backoff:fixed:5s`` (``cap`` is ``base``) or ``backoff:exponential:2s:5m``."""

    kind: Literal["fixed", "exponential"]
    base: float
    cap: float


@dataclass(frozen=True, slots=True)
class RateSetting:
    """``rate:100/1s``: at most ``count`` deliveries per ``period`` seconds, for a whole group."""

    count: int
    period: float


@dataclass(frozen=True, slots=True)
class TopicPolicy:
    """One ``--topic-policy`` rule (delivery/policy.py resolves it); ``None``: the flag's value."""

    pattern: str
    max_retries: int | None = None
    backoff: BackoffSetting | None = None
    ack_timeout: float | None = None
    max_inflight: int | None = None
    ordering: str | None = None
    rate: RateSetting | None = None
    nack_backoff: bool | None = None


def parse_topic_policy(text: str) -> TopicPolicy:
    """``orders.*=max_retries:10,backoff:exponential:2s:5m,ack_timeout:30s,max_inflight:50``."""
    pattern, sep, spec = text.partition("=")
    pattern = pattern.strip()
    if not sep or not pattern or not spec.strip():
        raise ValueError(f"expected {TOPIC_POLICY_SPEC}, got {text!r}")
    if not is_valid_pattern(pattern):
        raise ValueError(f"invalid topic pattern {pattern!r} in {text!r}")
    values: dict[str, object] = {}
    for part in spec.split(","):
        key, _, value = (s.strip() for s in part.partition(":"))
        if key in values:
            raise ValueError(f"{key} given twice in {text!r}")
        try:
            values[key] = parse_policy_value(key, value)
        except ValueError as e:
            raise ValueError(f"{e} in {text!r}") from None
    return TopicPolicy(pattern, **values)  # type: ignore[arg-type]  # checked per key


def parse_policy_value(key: str, value: str) -> object:
    """One setting of a policy, as ``--topic-policy`` and ``POLICY <topic> <group>`` give it."""
    if key in ("max_retries", "max_inflight"):
        return _count(key, value, 0 if key == "max_retries" else 1)
    if key == "ack_timeout":
        return parse_duration(value, min_seconds=0.001)
    if key == "backoff":
        return parse_backoff(value)
    if key == "ordering":
        if value not in ORDERINGS:
            raise ValueError(f"ordering must be none, key or fifo, got {value!r}")
        return value
    if key == "rate":
        return parse_rate(value)
    if key == "nack_backoff":
        if value not in ("on", "off"):
            raise ValueError(f"nack_backoff must be on or off, got {value!r}")
        return value == "on"
    raise ValueError(f"unknown policy setting {key!r} ({', '.join(POLICY_KEYS)})")


def parse_rate(text: str) -> RateSetting:
    """``100/1s``, ``5/m``: N deliveries per duration (a bare unit is one of it)."""
    count, sep, per = text.partition("/")
    if not sep or not per or not count.isdigit() or not 1 <= int(count) <= MAX_RATE:
        raise ValueError(f"invalid rate {text!r}: use N/DURATION, e.g. 100/1s")
    try:
        period = parse_duration(per if per[:1].isdigit() else "1" + per, min_seconds=0.001)
    except ValueError:
        raise ValueError(f"invalid rate {text!r}: use N/DURATION, e.g. 100/1s") from None
    return RateSetting(int(count), period)


def parse_backoff(text: str) -> BackoffSetting:
    """``exponential:BASE:MAX`` or ``fixed:DELAY``."""
    kind, _, rest = text.partition(":")
    args = rest.split(":") if rest else []
    if kind == "fixed" and len(args) == 1:
        delay = parse_duration(args[0])
        return BackoffSetting("fixed", delay, delay)
    if kind == "exponential" and len(args) == 2:
        base, cap = parse_duration(args[0]), parse_duration(args[1])
        if cap < base:
            raise ValueError(f"backoff max {args[1]!r} is under its base {args[0]!r}")
        return BackoffSetting("exponential", base, cap)
    raise ValueError(f"invalid backoff {text!r}: use exponential:BASE:MAX or fixed:DELAY")


def _count(key: str, value: str, minimum: int) -> int:
    if not value.isdigit() or int(value) < minimum:
        raise ValueError(f"{key} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8888
    data_dir: Path = Path("data")
    fsync: FsyncPolicy = "interval"
    fsync_interval_ms: int = 1000
    segment_bytes: int = 64 * MiB
    max_line_bytes: int = 1 * MiB
    max_pending_bytes: int = 16 * MiB
    write_timeout: float = 10.0
    max_message_bytes: int = 1_000_000
    max_connections: int = 20_000
    max_topics: int = 10_000
    max_subscriptions: int = 1_000
    max_inflight: int = 5
    ack_timeout: float = 30.0
    heartbeat_timeout: float = 30.0
    shutdown_grace: float = 5.0
    retry_backoff_base: float = 1.0
    retry_backoff_max: float = 60.0
    max_retries: int = 3
    topic_policy: tuple[TopicPolicy, ...] = ()
    dead_letter_expired: bool = False
    dedup_window: float = 120.0
    max_schedules: int = 1_000
    schedule_min_every: float = 1.0
    retention_bytes: int = 0
    retention_age: float = 0.0
    topic_retention: tuple[TopicRetention, ...] = ()
    dlq_max_letters: int = 0
    retention_check_ms: int = 10_000
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    sample_interval: float = 5.0
    max_failure_rate: float | None = None
    failure_rate_window: float = 300.0
    auth_file: Path | None = None
    auth_timeout: float = 10.0
    max_unauthenticated: int = 500
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    log_level: str = "info"
    log_format: Literal["json", "console"] = "console"

    def retention_for(self, topic: str) -> tuple[int, float]:
        """(max bytes, max age seconds) for ``topic``; 0 means no limit."""
        for rule in self.topic_retention:
            if topic_matches(rule.pattern, topic):
                return rule.max_bytes, rule.max_age
        return self.retention_bytes, self.retention_age
