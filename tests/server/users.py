"""An auth file with one user per single permission, for the permission tests (TCP and HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from linemq.broker.auth import hash_token
from linemq.broker.server.app import Broker
from tests.conftest import BrokerFactory

ADMIN = "admin-token"
TOKENS = {
    "publish": "publish-only-token",
    "subscribe": "subscribe-only-token",
    "manage": "manage-only-token",
    "none": "no-permission-token",
}
TEAM = "orders-team-token"
"""publish and subscribe on ``orders.>``, the user of the issue's first finding."""

USERS = f"""
[[users]]
name = "admin"
token_sha256 = "{hash_token(ADMIN)}"
publish = [">"]
subscribe = [">"]
manage = [">"]

[[users]]
name = "publisher"
token_sha256 = "{hash_token(TOKENS["publish"])}"
publish = ["orders"]

[[users]]
name = "reader"
token_sha256 = "{hash_token(TOKENS["subscribe"])}"
subscribe = ["orders"]

[[users]]
name = "operator"
token_sha256 = "{hash_token(TOKENS["manage"])}"
manage = ["orders"]

[[users]]
name = "nobody"
token_sha256 = "{hash_token(TOKENS["none"])}"

[[users]]
name = "team"
token_sha256 = "{hash_token(TEAM)}"
publish = ["orders.>"]
subscribe = ["orders.>"]
"""


async def start(brokers: BrokerFactory, tmp_path: Path, **overrides: Any) -> Broker:
    """A broker with these users, where an unacked delivery is dead-lettered at once."""
    path = tmp_path / "users.toml"
    path.write_text(USERS)
    options: dict[str, Any] = {
        "auth_file": path,
        "ack_timeout": 0.05,
        "max_retries": 0,
        "heartbeat_timeout": 60.0,
        **overrides,
    }
    return await brokers.start(**options)
