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
from broker.protocol.framing import BAD_TERMINATOR, LINE_TOO_LONG, LineFramer
from broker.protocol.names import is_valid_name
from broker.protocol.parser import parse_line
from broker.protocol.v2 import Hello, Put, PutHeader, build_put

__all__ = [
    "BAD_TERMINATOR",
    "LINE_TOO_LONG",
    "Ack",
    "Auth",
    "Command",
    "DlqList",
    "Groups",
    "Heartbeat",
    "Hello",
    "History",
    "LineFramer",
    "Nack",
    "Pause",
    "Ping",
    "ProtocolError",
    "Pub",
    "Purge",
    "Put",
    "PutHeader",
    "Quit",
    "Replay",
    "Resume",
    "Stats",
    "Sub",
    "Touch",
    "Unsub",
    "build_put",
    "is_valid_name",
    "parse_line",
]
