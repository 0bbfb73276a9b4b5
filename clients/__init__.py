"""linemq clients: an asyncio client, a blocking wrapper, and the client CLI commands."""

from linemq.clients.aio import Client, GroupInfo, Message, Subscription
from linemq.clients.backoff import ExponentialBackoff, Retry
from linemq.clients.errors import (
    AuthFailed,
    BrokerError,
    ConnectionLost,
    InvalidRequest,
    LimitExceeded,
    LinemqError,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    ProtocolError,
    StorageUnavailable,
    Timeout,
)
from linemq.clients.protocol import DeadLetter, PublishResult, Replayed
from linemq.clients.schedule_lines import ScheduleInfo
from linemq.clients.servers import Address, parse_servers
from linemq.clients.worker import RetryLater, Terminate, Worker, WorkerStats

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
    "ScheduleInfo",
    "StorageUnavailable",
    "Subscription",
    "Terminate",
    "Timeout",
    "Worker",
    "WorkerStats",
    "parse_servers",
]
