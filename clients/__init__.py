"""linemq clients: an asyncio client, a blocking wrapper, and the client CLI commands."""

from clients.aio import BrokerError, Client, GroupInfo, Message, Subscription
from clients.protocol import DeadLetter, ProtocolError, PublishResult, Replayed

__all__ = [
    "BrokerError",
    "Client",
    "DeadLetter",
    "GroupInfo",
    "Message",
    "ProtocolError",
    "PublishResult",
    "Replayed",
    "Subscription",
]
