"""``SCHEDULE``, ``SCHEDULES`` and ``UNSCHEDULE``: repeatable jobs, encoded (pure).

A job's payload and options are a ``PUT``'s, so ``encode_put`` checks them and this
module only puts the job's name and timing in front (protocol.md, Repeatable jobs).
``Client.schedule``/``schedules``/``unschedule`` send these; ``linemq schedule`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

from linemq.clients.errors import ProtocolError
from linemq.clients.options import Duration, format_duration
from linemq.clients.protocol import check_name, check_new_topic, encode_put


class ScheduleOptions(TypedDict, total=False):
    """The ``put`` options a job publishes with (``id`` and ``at`` have no meaning for it)."""

    key: str | None
    priority: str | int | None
    delay: Duration | None
    ttl: Duration | None
    headers: Mapping[str, str] | None
    max_retries: int | None


def encode_schedule(
    topic: str,
    name: str,
    payload: bytes | str,
    *,
    every: Duration | None = None,
    cron: str | None = None,
    tz: str | None = None,
    key: str | None = None,
    priority: str | int | None = None,
    delay: Duration | None = None,
    ttl: Duration | None = None,
    headers: Mapping[str, str] | None = None,
    max_retries: int | None = None,
) -> bytes:
    """``SCHEDULE <topic> <name> <nbytes> every=…|cron="…" [tz="…"] [options]`` + payload."""
    check_new_topic(topic)
    check_name(name, "schedule")
    if (every is None) == (cron is None):
        raise ValueError("give every or cron, not both")
    timing: list[str] = []
    if every is not None:
        timing.append("every=" + format_duration(every))
    if cron is not None:
        timing.append(f'cron="{_quotable(cron, "cron expression")}"')
    if tz is not None:
        if cron is None:
            raise ValueError("tz goes with cron")
        timing.append(f'tz="{_quotable(tz, "time zone")}"')
    put = encode_put(
        topic,
        payload,
        key=key,
        priority=priority,
        delay=delay,
        ttl=ttl,
        headers=headers,
        max_retries=max_retries,
    )
    head, _, rest = put.partition(b"\n")
    _, _, nbytes, *options = head.decode().split(" ")
    words = ["SCHEDULE", topic, name, nbytes, *timing, *options]
    return " ".join(words).encode() + b"\n" + rest


def encode_schedules(topic: str | None = None) -> bytes:
    return b"SCHEDULES\n" if topic is None else f"SCHEDULES {check_name(topic)}\n".encode()


def encode_unschedule(topic: str, name: str) -> bytes:
    return f"UNSCHEDULE {check_name(topic)} {check_name(name, 'schedule')}\n".encode()


def parse_scheduled(ok_text: str, topic: str, name: str) -> float:
    """The first due time out of ``OK scheduled <topic> <name> next=<ts>``."""
    words = ok_text.split()
    try:
        if words[:3] != ["scheduled", topic, name] or not words[3].startswith("next="):
            raise ValueError
        return float(words[3].removeprefix("next="))
    except (IndexError, ValueError):
        raise ProtocolError(f"unexpected reply to SCHEDULE: OK {ok_text!r}") from None


def parse_unscheduled(ok_text: str, topic: str, name: str) -> None:
    if ok_text != f"unscheduled {topic} {name}":
        raise ProtocolError(f"unexpected reply to UNSCHEDULE: OK {ok_text!r}")


def _quotable(text: str, what: str) -> str:
    text = text.strip()
    if not text or '"' in text or "\n" in text or "\r" in text:
        raise ValueError(f"invalid {what} {text!r}")
    return text
