"""The client refuses exactly the topic and group names the broker refuses, command by command.

The client checks names before sending (a bad name never becomes a half-sent command);
it uses the broker's own rules (``broker/protocol/names.py``). These tests hold the
two sides together: for each command, the client's encoder raises ValueError for a
name if and only if the broker's parser answers the same line with an ERR.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from linemq.broker.protocol import ProtocolError, PutHeader, build_put, parse_line
from linemq.clients.operator_verbs import (
    encode_delete_group,
    encode_pause,
    encode_purge_dlq,
    encode_resume,
)
from linemq.clients.protocol import (
    encode_dlq,
    encode_groups,
    encode_history,
    encode_pub,
    encode_put,
    encode_replay,
    encode_seek,
    encode_stats,
    encode_sub,
    encode_unsub,
)

GROUP = "workers"
Verbs = dict[str, tuple[Callable[[str], bytes], Callable[[str], str]]]

# (client encoder of a name, the line the broker would read for that name)
BY_TOPIC: Verbs = {
    "PUB": (lambda t: encode_pub(t, "hi"), lambda t: f"PUB {t} hi"),
    "PUT": (lambda t: encode_put(t, b"x"), lambda t: f"PUT {t} 1"),
    "SUB": (lambda t: encode_sub(t), lambda t: f"SUB {t}"),
    "SUB group": (lambda t: encode_sub(t, GROUP), lambda t: f"SUB {t} {GROUP}"),
    "UNSUB": (lambda t: encode_unsub(t), lambda t: f"UNSUB {t}"),
    "UNSUB group": (lambda t: encode_unsub(t, GROUP), lambda t: f"UNSUB {t} {GROUP}"),
    "SEEK": (lambda t: encode_seek(t, GROUP, "earliest"), lambda t: f"SEEK {t} {GROUP} earliest"),
    "HISTORY": (lambda t: encode_history(t, 5), lambda t: f"HISTORY {t} 5"),
    "GROUPS": (encode_groups, lambda t: f"GROUPS {t}"),
    "DLQ": (encode_dlq, lambda t: f"DLQ {t}"),
    "STATS": (encode_stats, lambda t: f"STATS {t}"),
    "REPLAY": (lambda t: encode_replay(t, "ALL"), lambda t: f"REPLAY {t} ALL"),
    "PAUSE": (lambda t: encode_pause(t, GROUP), lambda t: f"PAUSE {t} {GROUP}"),
    "RESUME": (lambda t: encode_resume(t, GROUP), lambda t: f"RESUME {t} {GROUP}"),
    "PURGE": (encode_purge_dlq, lambda t: f"PURGE {t}.dlq"),
    "DELETE": (lambda t: encode_delete_group(t, GROUP), lambda t: f"DELETE {t} {GROUP}"),
}
BY_GROUP: Verbs = {
    "SUB": (lambda g: encode_sub("orders", g), lambda g: f"SUB orders {g}"),
    "UNSUB": (lambda g: encode_unsub("orders", g), lambda g: f"UNSUB orders {g}"),
    "SEEK": (lambda g: encode_seek("orders", g, 1), lambda g: f"SEEK orders {g} 1"),
    "PAUSE": (lambda g: encode_pause("orders", g), lambda g: f"PAUSE orders {g}"),
    "RESUME": (lambda g: encode_resume("orders", g), lambda g: f"RESUME orders {g}"),
    "DELETE": (lambda g: encode_delete_group("orders.*", g), lambda g: f"DELETE orders.* {g}"),
}

# Names at every edge of the rules: characters, dots, length (196 leaves room for .dlq,
# 200 is the longest name), wildcards in and out of place, dead-letter topics.
TABLE = [
    "orders", "a", "A-Z_0.9", "orders.eu", "orders.", ".orders", "orders..eu", "o/rders",
    "ördrs", "orders.dlq", "orders.dlq.dlq", "x" * 196, "x" * 197, "x" * 200, "x" * 201,
    "x" * 196 + ".dlq", "x" * 192 + ".dlq", "orders.*", "orders.>", "*.eu", ">", "*",
    "orders.>.eu", "orders*", "orders.*x", "orders.**", "or>ders", "orders.*.", "-", "_.-",
]  # fmt: skip

NAME_CHARS = st.sampled_from([*"abcXYZ019_-.*>/é:", "dlq", ".dlq", "x" * 50])
NAMES = st.lists(NAME_CHARS, min_size=1, max_size=12).map("".join)


def _client_accepts(encode: Callable[[str], bytes], name: str) -> bool:
    try:
        encode(name)
    except ValueError:
        return False
    return True


def _broker_accepts(line: str) -> bool:
    try:
        command = parse_line(line.encode())
        if isinstance(command, PutHeader):
            build_put(command, b"x")
    except ProtocolError:
        return False
    return True


def _agree(table: Verbs, name: str) -> None:
    for verb, (encode, line) in table.items():
        client, broker = _client_accepts(encode, name), _broker_accepts(line(name))
        assert client == broker, f"{verb} {name!r}: client {client}, broker {broker}"


@pytest.mark.parametrize("name", TABLE)
def test_client_and_broker_agree_on_topic_names_in_every_command(name: str) -> None:
    _agree(BY_TOPIC, name)


@pytest.mark.parametrize("name", TABLE)
def test_client_and_broker_agree_on_group_names_in_every_command(name: str) -> None:
    _agree(BY_GROUP, name)


@given(NAMES)
@example("a.")
@example("x" * 197)
def test_client_and_broker_agree_on_generated_names(name: str) -> None:
    _agree(BY_TOPIC, name)
    _agree(BY_GROUP, name)


def test_a_topic_without_room_for_its_dead_letters_is_refused_before_sending() -> None:
    """``orders.`` is a name the broker reads but will not create (``orders..dlq``)."""
    encode_history("orders.", 1)  # reading one from an earlier release is fine
    for publish in (lambda: encode_pub("orders.", "hi"), lambda: encode_sub("orders.")):
        with pytest.raises(ValueError, match=r"<topic>\.dlq is valid"):
            publish()
