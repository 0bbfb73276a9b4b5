"""What can go wrong talking to a broker, as types with stable codes.

``LinemqError`` is the base. ``BrokerError`` is the broker's ``ERR`` reply to one
request (the connection stays usable), refined into ``PermissionDenied``,
``NotFound``… by ``error_for``, which reads the reason texts protocol.md lists.
``ConnectionLost`` and ``Timeout`` come from the connection, not from a reply.
``code`` is a short stable string for logs and programs; ``reason`` is what the
broker (or the client) said.
"""

from __future__ import annotations

from typing import ClassVar, Final


class LinemqError(Exception):
    """Base of every error the linemq client raises on purpose."""

    code: ClassVar[str] = "error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectionLost(LinemqError, ConnectionError):
    """The connection dropped (or the broker closed it, e.g. shutting down).

    A request in flight at that moment has an unknown outcome: a publish may
    or may not have been stored (publish with an ``id=`` to make a retry safe).
    """

    code = "connection_lost"


class OutcomeUnknown(ConnectionLost):
    """A publish was sent but its ``OK`` never came: the connection dropped first.

    The broker may or may not have stored it. A publish without a publisher id is not
    retried by the client (that could store it twice); ``put(..., id=...)`` is, on the
    next connection, because the broker stores a repeated id once. Still raised for an
    id'd publish when no new connection came in time: retrying with the same id is safe.
    """

    code = "outcome_unknown"


class Timeout(LinemqError, TimeoutError):
    """No reply within the request timeout; the connection stays usable."""

    code = "timeout"


class ProtocolError(LinemqError):
    """The server sent a line this client cannot make sense of.

    Fatal for a connection: an unknown line cannot be matched to a request, so
    every later reply would be attributed to the wrong caller.
    """

    code = "protocol_error"


class BrokerError(LinemqError):
    """The broker answered ``ERR <reason>``; the connection is still usable."""

    code = "broker_error"


class InvalidRequest(BrokerError):
    """A malformed command, name, option or position (``usage: …``, ``invalid …``)."""

    code = "invalid_request"


class AuthFailed(BrokerError):
    """``AUTH`` was refused, or a command needed ``AUTH`` first."""

    code = "auth_failed"


class PermissionDenied(BrokerError):
    """The authenticated user's patterns do not cover the topic."""

    code = "permission_denied"


class NotFound(BrokerError):
    """No such pending message, dead letter, group or subscription."""

    code = "not_found"


class LimitExceeded(BrokerError):
    """A broker limit: message size, topics, subscriptions, connections, line length."""

    code = "limit_exceeded"


class StorageUnavailable(BrokerError):
    """The broker could not write (disk full, I/O error); nothing was stored. Retry later."""

    code = "storage_unavailable"


# Reason prefixes as protocol.md lists them, most specific first.
_PREFIXES: Final[tuple[tuple[str, type[BrokerError]], ...]] = (
    ("permission denied", PermissionDenied),
    ("auth required", AuthFailed),
    ("auth failed", AuthFailed),
    ("auth timeout", AuthFailed),
    ("storage unavailable", StorageUnavailable),
    ("message too large", LimitExceeded),
    ("too many ", LimitExceeded),
    ("line too long", LimitExceeded),
    ("no pending messages", NotFound),
    ("no group ", NotFound),
    ("no topic ", NotFound),
    ("not subscribed", NotFound),
    ("not a member", NotFound),
    ("dead letter ", NotFound),
    ("no schedule ", NotFound),
    ("usage:", InvalidRequest),
    ("unknown command", InvalidRequest),
    ("invalid ", InvalidRequest),
    ("n must ", InvalidRequest),
    ("delay must ", InvalidRequest),
    ("reason must ", InvalidRequest),
    ("progress must ", InvalidRequest),
    ("older must ", InvalidRequest),
    ("keep must ", InvalidRequest),
    ("position must ", InvalidRequest),
    ("only dead-letter topics", InvalidRequest),
    ("payload must ", InvalidRequest),
    ("from= is not supported", InvalidRequest),
    ("use delay= or at=", InvalidRequest),
    ("schedule needs ", InvalidRequest),
    ("use every= or cron=", InvalidRequest),
    ("every must ", InvalidRequest),
    ("tz= goes with", InvalidRequest),
)

CLOSING_REASONS: Final = frozenset({"server shutting down", "auth timeout", "too many connections"})
"""``ERR`` reasons a broker sends only as it closes the connection, never as a reply."""


def error_for(reason: str) -> BrokerError:
    """The typed error for the text after ``ERR``."""
    if reason.startswith("message ") and " not found in " in reason:
        return NotFound(reason)
    for prefix, kind in _PREFIXES:
        if reason.startswith(prefix):
            return kind(reason)
    return BrokerError(reason)
