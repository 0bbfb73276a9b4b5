"""One duration syntax for the wire, the broker's flags and the clients."""

from __future__ import annotations

import math
from datetime import timedelta

import click
import pytest
from click.testing import CliRunner

from linemq.broker.cli import main
from linemq.broker.config import parse_age
from linemq.broker.protocol.durations import parse_duration, to_seconds
from linemq.broker.protocol.v2 import parse_duration as wire_duration
from linemq.clients.cli_common import Seconds
from linemq.clients.options import format_duration
from linemq.clients.options import parse_duration as client_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5), ("1.5m", 90), ("2h", 7200), ("1d", 86400), ("1w", 604800),
     ("90", 90), ("0", 0), (" 7D ", 7 * 86400)],
)  # fmt: skip
def test_every_parser_reads_the_same_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_age(text) == seconds
    assert client_duration(text) == seconds
    assert wire_duration(text.strip()) == seconds


@pytest.mark.parametrize("text", ["", "-5", "-5s", "5x", "nan", "inf", "1e3", "s", "5 s"])
def test_bad_durations_are_refused_by_every_parser(text: str) -> None:
    for parse in (parse_duration, parse_age, client_duration, wire_duration):
        with pytest.raises(ValueError):
            parse(text)


def test_numbers_and_timedeltas_are_the_same_durations_as_text() -> None:
    assert to_seconds(1.5) == to_seconds("1.5s") == to_seconds(timedelta(seconds=1.5)) == 1.5
    assert to_seconds(3) == 3.0


@pytest.mark.parametrize("value", [-1, -0.5, math.nan, math.inf, timedelta(seconds=-1), True])
def test_negative_and_non_finite_values_are_refused(value: object) -> None:
    with pytest.raises(ValueError):
        to_seconds(value)  # type: ignore[arg-type]


def test_the_wire_and_the_client_stop_at_365_days_the_flags_do_not() -> None:
    assert parse_age("400d") == 400 * 86400
    for parse in (client_duration, wire_duration):
        with pytest.raises(ValueError, match="over"):
            parse("400d")
    with pytest.raises(ValueError):
        format_duration(timedelta(days=400))
    assert format_duration(timedelta(milliseconds=250)) == "250ms"
    assert format_duration("1w") == "1w"


def _serve_option(flag: str) -> click.Parameter:
    serve = main.get_command(click.Context(main), "serve")
    assert serve is not None
    (option,) = [p for p in serve.params if flag in p.opts]
    return option


@pytest.mark.parametrize(
    ("flag", "text", "seconds"),
    [("--ack-timeout", "30", 30.0), ("--ack-timeout", "500ms", 0.5), ("--ack-timeout", "2m", 120),
     ("--write-timeout", "1.5", 1.5), ("--retry-backoff-base", "0", 0.0),
     ("--sample-interval", "5s", 5.0), ("--auth-timeout", "1h", 3600)],
)  # fmt: skip
def test_serve_duration_flags_read_the_one_syntax(flag: str, text: str, seconds: float) -> None:
    option = _serve_option(flag)
    assert option.type.convert(text, option, None) == seconds


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--ack-timeout", "nan"), ("--ack-timeout", "inf"), ("--ack-timeout", "-1"),
     ("--ack-timeout", "0"), ("--heartbeat-timeout", "1e400"), ("--write-timeout", "-5s"),
     ("--retry-backoff-max", "nan"), ("--sample-interval", "1ms"), ("--auth-timeout", "inf")],
)  # fmt: skip
def test_serve_refuses_nan_infinite_negative_or_too_short_durations(flag: str, value: str) -> None:
    """A float flag used to take ``nan`` and ``inf``, and every timer then misbehaved."""
    result = CliRunner().invoke(main, ["serve", f"{flag}={value}"])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in result.output


@pytest.mark.parametrize(
    "args",
    [["ping", "--interval", "nan"], ["ping", "--interval", "-1"], ["stats", "--watch", "inf"],
     ["stats", "--watch=0.01"], ["sub", "t", "g", "--heartbeat-interval", "nan"]],
)  # fmt: skip
def test_client_commands_refuse_bad_durations_before_connecting(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--port", "1"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for" in result.output


def test_client_duration_options_read_the_one_syntax() -> None:
    assert Seconds(0.1).convert("500ms", None, None) == 0.5
    assert Seconds().convert("2", None, None) == 2.0
