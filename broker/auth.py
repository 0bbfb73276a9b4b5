"""Tokens and per-topic permissions from ``--auth-file``.

Tokens are stored as SHA-256 hashes: they are long random secrets, so a fast
hash is enough, and hashing first makes the lookup independent of the secret's
bytes; the final comparison is constant-time anyway. Topic patterns follow NATS:
``*`` matches one dot-separated token, a trailing ``>`` matches one or more.

Three kinds of permission keep using a topic apart from managing it (as NATS
keeps JetStream's API apart, RabbitMQ configure from write/read): ``publish``,
``subscribe`` (read), and ``manage`` (move, pause, purge or replay what others
consume). Dead letters are the failures of their source topic, so ``<t>.dlq``
is read and managed with the permissions on ``<t>``, whatever patterns might
match the ``.dlq`` name; only the broker writes them.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from linemq.broker.config import Config
from linemq.broker.protocol.names import is_pattern, pattern_covers, source_topic, topic_matches

TOKEN_BYTES: Final = 32
PERMISSIONS: Final = ("publish", "subscribe", "manage")
Permission = Literal["publish", "subscribe", "manage"]
MAX_AUTH_DELAY: Final = 5.0


def auth_delay(failures: int) -> float:
    """Seconds before answering the ``failures``-th wrong token: 0.1 doubling up to 5."""
    return min(0.1 * 2.0 ** (failures - 1), MAX_AUTH_DELAY)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    token_sha256: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    manage: tuple[str, ...] = ()

    def may(self, permission: Permission, topic: str) -> bool:
        if permission == "publish":
            return self.may_publish(topic)
        if permission == "subscribe":
            return self.may_subscribe(topic)
        return self.may_manage(topic)

    def may_publish(self, topic: str) -> bool:
        return any(topic_matches(p, topic) for p in self.publish)

    def may_subscribe(self, topic: str) -> bool:
        """For a wildcard subscription, every topic it could match must be allowed.

        A wildcard that does not name ``.dlq`` can still match a dead-letter topic
        (``orders.*`` matches ``orders.dlq``): delivery skips those the user may not
        read (``ClientState.reads``).
        """
        topic = source_topic(topic)
        if is_pattern(topic):
            return any(pattern_covers(p, topic) for p in self.subscribe)
        return any(topic_matches(p, topic) for p in self.subscribe)

    def may_manage(self, topic: str) -> bool:
        """A wildcard (``DELETE orders.* billing``): as for subscribe, all it could match."""
        topic = source_topic(topic)
        if is_pattern(topic):
            return any(pattern_covers(p, topic) for p in self.manage)
        return any(topic_matches(p, topic) for p in self.manage)


class AuthError(ValueError):
    """The auth file cannot be used; the message says where and why."""


class Users:
    def __init__(self, users: list[User]) -> None:
        self._by_hash = {u.token_sha256: u for u in users}
        if len(self._by_hash) != len(users):
            raise AuthError("two users share a token")

    def authenticate(self, token: str) -> User | None:
        digest = hash_token(token)
        user = self._by_hash.get(digest)
        if user is not None and hmac.compare_digest(user.token_sha256, digest):
            return user
        return None

    def __len__(self) -> int:
        return len(self._by_hash)


def load_users(path: Path) -> Users:
    """Read a TOML file of ``[[users]]`` tables: name, token_sha256, publish, subscribe, manage."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))  # TOML is UTF-8
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise AuthError(f"{path}: {e}") from e
    entries = data.get("users")
    if not isinstance(entries, list) or not entries:
        raise AuthError(f"{path}: no [[users]] entries")
    return Users([_user(path, i, entry) for i, entry in enumerate(entries)])


def _user(path: Path, i: int, entry: Any) -> User:
    where = f"{path}: users[{i}]"
    if not isinstance(entry, dict):
        raise AuthError(f"{where} is not a table")
    name = entry.get("name")
    digest = entry.get("token_sha256")
    if not isinstance(name, str) or not name:
        raise AuthError(f"{where}: name missing")
    if not isinstance(digest, str) or len(digest) != 64:
        raise AuthError(f"{where} ({name}): token_sha256 must be 64 hex digits")
    if "token" in entry:
        raise AuthError(f"{where} ({name}): store token_sha256, never the token itself")
    patterns = {}
    for key in PERMISSIONS:  # a missing key grants nothing
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise AuthError(f"{where} ({name}): {key} must be a list of topic patterns")
        patterns[key] = tuple(value)
    return User(
        name, digest.lower(), patterns["publish"], patterns["subscribe"], patterns["manage"]
    )


def exposed_addresses(config: Config) -> list[str]:
    """The listening addresses other machines can reach (warned about when auth is off)."""
    exposed = [config.host] if not is_loopback(config.host) else []
    if config.http_port is not None and not is_loopback(config.http_host):
        exposed.append(f"{config.http_host} (HTTP)")
    return exposed


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address (no name lookup)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
