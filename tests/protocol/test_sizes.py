"""One size syntax for the broker's flags: numbers and units in, bytes out, nonsense refused."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from linemq.broker.cli import main
from linemq.broker.config import parse_size, parse_topic_retention
from linemq.broker.protocol.sizes import parse_size as protocol_size


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("0", 0), ("64MiB", 64 * 1024**2), ("1GB", 10**9), ("1gb", 10**9),
     ("1 GB", 10**9), ("500kB", 500_000), ("2KiB", 2048), ("1.5kB", 1500), ("1TiB", 1024**4),
     ("10b", 10), (" 7 mb ", 7_000_000)],
)  # fmt: skip
def test_sizes_are_read_the_same_by_config_and_protocol(text: str, size: int) -> None:
    assert parse_size(text) == protocol_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "-1", "-1MB", "nan", "inf", "infMB", "1e3", "MB", "1k", "1mi", "1 2", "1_000"]
)
def test_bad_sizes_are_refused_with_a_message(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_topic_retention_refuses_negative_parts() -> None:
    assert parse_topic_retention("orders.*=bytes:1GiB,age:7d").max_bytes == 1024**3
    with pytest.raises(ValueError, match="invalid duration"):
        parse_topic_retention("orders.*=age:-1h")
    with pytest.raises(ValueError, match="invalid size"):
        parse_topic_retention("orders.*=bytes:-1MB")


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--retention-age", "-1h"), ("--retention-age", "nan"), ("--retention-age", "inf"),
     ("--dedup-window", "-5s"), ("--retention-bytes", "-1MB"), ("--retention-bytes", "inf"),
     ("--topic-retention", "orders.*=age:-1h")],
)  # fmt: skip
def test_serve_refuses_a_negative_or_infinite_value_before_starting(flag: str, value: str) -> None:
    """``linemq serve --retention-age=-1h`` used to start, then fail every retention check."""
    result = CliRunner().invoke(main, ["serve", f"{flag}={value}"])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in result.output
    assert "Traceback" not in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit)


def test_serve_refuses_a_negative_value_from_the_environment() -> None:
    result = CliRunner().invoke(main, ["serve"], env={"LINEMQ_RETENTION_AGE": "-1h"})
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--retention-age'" in result.output
