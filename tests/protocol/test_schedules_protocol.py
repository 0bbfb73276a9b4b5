"""SCHEDULE's grammar (pure) and due-time arithmetic (pure, no clock)."""

from __future__ import annotations

import pytest

from linemq.broker.protocol import ProtocolError, parse_line
from linemq.broker.protocol.schedules import (
    ListSchedules,
    ScheduleHeader,
    Unschedule,
    schedule_line,
    split_words,
)
from linemq.broker.server.schedule_times import BadTiming, Timing, check, latest_due, next_due


def test_cron_in_quotes_is_one_word() -> None:
    assert split_words('t n 5 cron="0 * * * *" key=a tz="Europe/Paris"') == [
        "t",
        "n",
        "5",
        'cron="0 * * * *"',
        "key=a",
        'tz="Europe/Paris"',
    ]


def test_header_then_payload_builds_a_checked_schedule() -> None:
    header = parse_line(b'schedule jobs nightly 3 cron="0 2 * * *" priority=high h.a=b%20c')
    assert isinstance(header, ScheduleHeader) and header.nbytes == 3
    spec = header.build(b"a\nb")
    assert (spec.topic, spec.name, spec.cron, spec.every) == ("jobs", "nightly", "0 2 * * *", None)
    assert spec.put.payload == b"a\nb" and spec.put.priority == 2
    assert spec.put.headers == {"a": "b c"}
    assert spec.options == ("priority=high", "h.a=b%20c")
    every = parse_line(b"SCHEDULE jobs beat 0 every=1.5m").build(b"")  # type: ignore[union-attr]
    assert every.every == 90 and every.every_text == "1.5m"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"SCHEDULE jobs beat every=5m", "usage: SCHEDULE"),
        (b"SCHEDULE jobs", "usage: SCHEDULE"),
        (b"SCHEDULES a b", "usage: SCHEDULES [topic]"),
        (b"SCHEDULES .a", "invalid topic name"),
        (b"UNSCHEDULE a", "usage: UNSCHEDULE <topic> <name>"),
        (b"UNSCHEDULE a b..c", "invalid schedule name"),
    ],
)
def test_bad_lines(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_line(line)
    assert e.value.reason.startswith(reason)


def test_list_and_remove_commands() -> None:
    assert parse_line(b"SCHEDULES") == ListSchedules(None)
    assert parse_line(b"schedules jobs") == ListSchedules("jobs")
    assert parse_line(b"UNSCHEDULE jobs beat") == Unschedule("jobs", "beat")


def test_listing_line() -> None:
    line = schedule_line("t", "n", ['cron="0 * * * *"'], 1800000000.0, None, 0, 3, ("key=a",))
    assert line == b'SCHEDULE t n cron="0 * * * *" next=1800000000.0 last=- fired=0 bytes=3 key=a\n'


def test_every_series_is_anchored_and_strictly_after() -> None:
    t = Timing(every=10.0)
    assert next_due(t, 100.0, 100.0) == 110.0
    assert next_due(t, 100.0, 110.0) == 120.0
    assert next_due(t, 100.0, 115.0) == 120.0
    assert latest_due(t, 100.0, 100.0, 109.0) is None
    assert latest_due(t, 100.0, 100.0, 175.0) == 170.0  # one catch-up: the latest missed
    assert latest_due(t, 100.0, 170.0, 175.0) is None
    tiny = Timing(every=0.1)
    due = 0.0
    for _ in range(1000):  # float steps never repeat or skip a slot
        after = next_due(tiny, 0.0, due)
        assert 0.09 < after - due < 0.11
        due = after


def test_cron_due_times_in_utc_and_zones() -> None:
    hourly = Timing(cron="0 * * * *")
    assert next_due(hourly, 0.0, 1800000000.0) == 1800000000.0 + 3600 - 1800000000.0 % 3600
    assert latest_due(hourly, 0.0, 0.0, 1800003600.0) == 1800003600.0
    assert latest_due(hourly, 0.0, 1800003600.0, 1800003601.0) is None
    paris = Timing(cron="0 2 * * *", tz="Europe/Paris")
    assert next_due(paris, 0.0, 1800000000.0) % 86400 in (0.0, 3600.0)


@pytest.mark.parametrize(
    ("timing", "reason"),
    [
        (Timing(every=0.5), "every must be at least 1s"),
        (Timing(cron="0 * * *"), "invalid cron expression: 0 * * *"),
        (Timing(cron="0 0 1 1 * * 2030"), "invalid cron expression"),  # no year field
        (Timing(cron="0 0 30 2 *"), "invalid cron expression"),  # never fires
        (Timing(cron="@hourly", tz="Nowhere/Land"), "invalid time zone: Nowhere/Land"),
    ],
)
def test_refused_timings(timing: Timing, reason: str) -> None:
    with pytest.raises(BadTiming, match=reason):
        check(timing, 1.0)
    check(Timing(cron="@daily"), 1.0)
    check(Timing(every=0.2), 0.1)
