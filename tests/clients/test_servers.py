"""Server lists as ``--servers``/``LINEMQ_SERVERS`` give them, and the order nodes are tried in."""

from __future__ import annotations

import pytest

from linemq.clients import Address, Client, parse_servers
from linemq.clients.servers import first_index, parse_address, rotation
from linemq.clients.sync import SyncClient


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("localhost:8888", Address("localhost", 8888)),
        ("10.0.0.7:1", Address("10.0.0.7", 1)),
        ("broker-2.example.com:65535", Address("broker-2.example.com", 65535)),
        ("node1", Address("node1", 8888)),
        (" node1:9000 ", Address("node1", 9000)),
        ("[::1]:8889", Address("::1", 8889)),
        ("[fe80::1%eth0]:8888", Address("fe80::1%eth0", 8888)),
        ("[2001:db8::2]", Address("2001:db8::2", 8888)),
    ],
)
def test_addresses_are_read_with_their_port_or_8888(text: str, address: Address) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty server address"),
        ("host:", "port must be 1-65535"),
        ("host:0", "port must be 1-65535"),
        ("host:65536", "port must be 1-65535"),
        ("host:88a", "port must be 1-65535"),
        ("host:+80", "port must be 1-65535"),
        ("host:8888:1", "port must be 1-65535"),
        ("::1", "IPv6 address in brackets"),
        ("2001:db8::2:8888", "IPv6 address in brackets"),
        ("fe80::1%eth0:8888", "IPv6 address in brackets"),
        ("[::1", "no closing"),
        ("[nothost]:8888", "not an IPv6 address"),
        ("[::1]8888", "':port' after ']'"),
        ("[::1]:", "port must be 1-65535"),
        ("ho st:8888", "bad host name"),
        (":8888", "bad host name"),
        ("user@host:8888", "bad host name"),
        ("-host:8888", "bad host name"),
        ("tcp://host:8888", "without a scheme"),
    ],
)
def test_a_bad_address_says_what_is_wrong_with_it(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("[", r"\[").replace("(", r"\(")):
        parse_address(text)


def test_a_list_is_comma_separated_and_keeps_its_order() -> None:
    assert parse_servers("b:1, a:2,[::1]:3") == (
        Address("b", 1),
        Address("a", 2),
        Address("::1", 3),
    )
    assert parse_servers(["b:1", Address("a", 2)]) == (Address("b", 1), Address("a", 2))
    assert str(Address("::1", 3)) == "[::1]:3" and str(Address("a", 2)) == "a:2"


@pytest.mark.parametrize(
    ("servers", "error"),
    [
        ("a:1,,b:2", "empty server address"),
        ("a:1,", "empty server address"),
        ([], "no server address given"),
        ("a:1,a:1", "server a:1 is listed twice"),
        ("a,a:8888", "server a:8888 is listed twice"),
        (",".join(f"h{i}:1" for i in range(65)), "at most 64 servers"),
    ],
)
def test_a_bad_list_is_refused(servers: str | list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_servers(servers)


def test_a_round_tries_every_node_once_from_its_start() -> None:
    assert rotation(3, 0) == [0, 1, 2]
    assert rotation(3, 2) == [2, 0, 1]
    assert rotation(1, 0) == [0]


def test_the_first_node_is_picked_at_random_to_spread_clients() -> None:
    assert first_index(1, lambda n: 99) == 0
    assert first_index(3, lambda n: n - 1) == 2
    assert {first_index(3) for _ in range(200)} == {0, 1, 2}


def test_a_client_takes_host_and_port_or_servers_not_both() -> None:
    assert Client().servers == (Address("127.0.0.1", 8888),)
    assert Client("h", 1).servers == (Address("h", 1),)
    assert Client(servers="h:1,k:2").servers == (Address("h", 1), Address("k", 2))
    assert SyncClient(servers=["h:1"]).client.servers == (Address("h", 1),)
    with pytest.raises(ValueError, match="not both"):
        Client("h", servers="k:1")
    with pytest.raises(ValueError, match="not both"):
        Client(port=1, servers="k:1")
    with pytest.raises(ValueError, match="port must be"):
        SyncClient(servers="h:99999")
