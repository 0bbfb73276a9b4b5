"""Which brokers a client may use, and the order it tries them in: pure, tested without sockets.

``parse_servers("host1:8888,[::1]:8889")`` reads the list ``--servers`` and
``LINEMQ_SERVERS`` give; a bad entry is a ``ValueError`` naming it. ``rotation``
says which nodes to try, in order, for one round: every node once, beginning after
the one just lost, so a client whose node died goes to another before it tries that
one again. The first round starts at a random node (``first_index``) so that many
clients given the same list spread over the nodes instead of all landing on the first.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

DEFAULT_PORT: Final = 8888
MAX_SERVERS: Final = 64

_HOSTNAME: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,251}[A-Za-z0-9_])?")
_PORT: Final = re.compile(r"[0-9]{1,5}")


@dataclass(frozen=True, slots=True)
class Address:
    """One broker: ``host`` (a name, an IPv4 address or an IPv6 address without brackets)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> Address:
    """``host:port``, ``host`` (``default_port``), ``[ipv6]:port`` or ``[ipv6]``."""
    entry = text.strip()
    if not entry:
        raise ValueError("empty server address")
    if "://" in entry:
        raise ValueError(f"invalid server address {text!r}: give host:port, without a scheme")
    if entry.startswith("["):
        inside, sep, rest = entry[1:].partition("]")
        if not sep:
            raise ValueError(f"invalid server address {text!r}: no closing ']'")
        if not _is_ipv6(inside):
            raise ValueError(f"invalid server address {text!r}: not an IPv6 address")
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid server address {text!r}: ':port' after ']' expected")
        return Address(inside, _port(rest[1:], text) if rest else default_port)
    if entry.count(":") > 1 and any(_is_ipv6(t) for t in (entry, entry.rpartition(":")[0])):
        raise ValueError(
            f"invalid server address {text!r}: put an IPv6 address in brackets ([::1]:8888)"
        )
    host, sep, port = entry.partition(":")
    if _HOSTNAME.fullmatch(host) is None:
        raise ValueError(f"invalid server address {text!r}: bad host name {host!r}")
    return Address(host, _port(port, text) if sep else default_port)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _port(text: str, entry: str) -> int:
    if _PORT.fullmatch(text) is None or not 1 <= int(text) <= 65535:
        raise ValueError(f"invalid server address {entry!r}: port must be 1-65535")
    return int(text)


def parse_servers(
    servers: str | Iterable[str | Address], default_port: int = DEFAULT_PORT
) -> tuple[Address, ...]:
    """A comma-separated list (or a sequence of addresses): at least one, none twice."""
    entries = servers.split(",") if isinstance(servers, str) else list(servers)
    found: list[Address] = []
    for entry in entries:
        address = entry if isinstance(entry, Address) else parse_address(entry, default_port)
        if address in found:
            raise ValueError(f"server {address} is listed twice")
        found.append(address)
    if not found:
        raise ValueError("no server address given")
    if len(found) > MAX_SERVERS:
        raise ValueError(f"at most {MAX_SERVERS} servers, got {len(found)}")
    return tuple(found)


def first_index(count: int, rand: Callable[[int], int] = random.randrange) -> int:
    """Where the first round starts: a random node, so clients spread over the list."""
    return rand(count) if count > 1 else 0


def rotation(count: int, start: int) -> list[int]:
    """The nodes to try in one round: each once, from ``start`` on, wrapping around."""
    return [(start + i) % count for i in range(count)]


def describe(servers: Iterable[Address]) -> str:
    """The list as ``--servers`` takes it, for messages."""
    return ",".join(str(a) for a in servers)
