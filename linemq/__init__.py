"""linemq: a durable message broker speaking a plain-text line protocol.

The installed package holds the repository's folders: ``linemq.broker`` (the server),
``linemq.clients`` (client library and CLIs) and ``linemq.tools`` (bench and torture).
``linemq.Client`` and the other client names below are imported on first use, so that
``linemq serve`` never loads the client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from linemq.clients import (
        Address,
        AuthFailed,
        BrokerError,
        Client,
        ConnectionLost,
        DeadLetter,
        ExponentialBackoff,
        GroupInfo,
        InvalidRequest,
        LimitExceeded,
        LinemqError,
        Message,
        NotFound,
        OutcomeUnknown,
        PermissionDenied,
        ProtocolError,
        PublishResult,
        Replayed,
        Retry,
        RetryLater,
        StorageUnavailable,
        Subscription,
        Terminate,
        Timeout,
        Worker,
        WorkerStats,
    )
    from linemq.clients.sync import SyncClient

__all__ = [
    "Address",
    "AuthFailed",
    "BrokerError",
    "Client",
    "ConnectionLost",
    "DeadLetter",
    "ExponentialBackoff",
    "GroupInfo",
    "InvalidRequest",
    "LimitExceeded",
    "LinemqError",
    "Message",
    "NotFound",
    "OutcomeUnknown",
    "PermissionDenied",
    "ProtocolError",
    "PublishResult",
    "Replayed",
    "Retry",
    "RetryLater",
    "StorageUnavailable",
    "Subscription",
    "SyncClient",
    "Terminate",
    "Timeout",
    "Worker",
    "WorkerStats",
    "__version__",
]

_CLIENT_NAMES = frozenset(__all__) - {"SyncClient", "__version__"}


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        return getattr(importlib.import_module("linemq.clients"), name)
    if name == "SyncClient":
        return importlib.import_module("linemq.clients.sync").SyncClient
    raise AttributeError(f"module 'linemq' has no attribute {name!r}")
