"""The wire protocol, pure: bytes in, commands out; replies built as bytes. No I/O here."""

from broker.protocol.commands import (
    Ack,
    Auth,
    Command,
    DlqList,
    Groups,
    Heartbeat,
    History,
    Nack,
    Pause,
    Ping,
    Pub,
    Purge,
    Quit,
    Replay,
    Resume,
    Stats,
    Sub,
    Touch,
    Unsub,
)
from broker.protocol.errors import ProtocolError
from broker.protocol.framing import LINE_TOO_LONG, LineFramer
from broker.protocol.names import is_valid_name
from broker.protocol.parser import parse_line

__all__ = [
    "LINE_TOO_LONG",
    "Ack",
    "Auth",
    "Command",
    "DlqList",
    "Groups",
    "Heartbeat",
    "History",
    "LineFramer",
    "Nack",
    "Pause",
    "Ping",
    "ProtocolError",
    "Pub",
    "Purge",
    "Quit",
    "Replay",
    "Resume",
    "Stats",
    "Sub",
    "Touch",
    "Unsub",
    "is_valid_name",
    "parse_line",
]
