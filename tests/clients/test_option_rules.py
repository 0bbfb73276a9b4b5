"""The client refuses exactly the message options the broker refuses.

``clients/options.py`` takes priorities, header names and ``key=``/``id=`` tokens from
the broker's own vocabulary (``broker/protocol/message_options.py``); these tests hold
the two sides together on the wire: a ``PUT`` the client encodes is one the broker's
parser accepts, and a value the client refuses is one the broker answers with ``ERR``.
"""

from __future__ import annotations

from typing import Any

import pytest

from linemq.broker.protocol import ProtocolError, PutHeader, build_put, parse_line
from linemq.broker.protocol.message_options import PRIORITIES
from linemq.clients.protocol import encode_put


def _client_accepts(**options: Any) -> bytes | None:
    try:
        return encode_put("orders", b"x", **options)
    except ValueError:
        return None


def _broker_accepts(line: str) -> bool:
    try:
        command = parse_line(line.encode())
        assert isinstance(command, PutHeader)
        build_put(command, b"x")
    except ProtocolError:
        return False
    return True


@pytest.mark.parametrize("name", [*PRIORITIES, "urgent", "", "HIGH", "0", "4"])
def test_client_and_broker_agree_on_priority_names(name: str) -> None:
    sent = _client_accepts(priority=name)
    broker = _broker_accepts(f"PUT orders 1 priority={name.lower()}")
    assert (sent is not None) == broker, name
    if sent is not None:
        assert _broker_accepts(sent.split(b"\n")[0].decode())


@pytest.mark.parametrize("value", [0, 1, 2, 3, 4, -1])
def test_numeric_priorities_are_the_broker_names(value: int) -> None:
    sent = _client_accepts(priority=value)
    assert (sent is not None) == (value in PRIORITIES.values())
    if sent is not None:
        assert _broker_accepts(sent.split(b"\n")[0].decode())


TOKENS = ["a", "order-42", "x" * 200, "x" * 201, "é", "a b", "~!", "tab\there"]


@pytest.mark.parametrize("option", ["key", "id"])
@pytest.mark.parametrize("value", TOKENS)
def test_client_and_broker_agree_on_keys_and_ids(option: str, value: str) -> None:
    sent = _client_accepts(**{option: value})
    broker = " " not in value and _broker_accepts(f"PUT orders 1 {option}={value}")
    assert (sent is not None) == broker, (option, value)


@pytest.mark.parametrize("name", ["type", "A-Z_0.9", "x" * 100, "x" * 101, "a b", "é", "a%b"])
def test_client_and_broker_agree_on_header_names(name: str) -> None:
    sent = _client_accepts(headers={name: "v"})
    broker = " " not in name and _broker_accepts(f"PUT orders 1 h.{name}=v")
    assert (sent is not None) == broker, name
