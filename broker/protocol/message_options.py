"""What a message's options may hold: priorities, header names, keys and ids.

The PUT parser checks them on the way in; delivery checks them again on records it reads
back (a dead letter replayed, a message looked up), so they live here, apart from the wire.
"""

import re
from typing import Final

PRIORITIES: Final = {"low": 0, "normal": 1, "high": 2, "critical": 3}
PRIORITY_NAMES: Final = {v: k for k, v in PRIORITIES.items()}
HEADER_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
TOKEN: Final = re.compile(r"[!-~]{1,200}")  # printable ASCII, no spaces


def is_valid_header_name(name: str) -> bool:
    """What ``h.<name>=`` accepts."""
    return HEADER_NAME.fullmatch(name) is not None


def is_valid_token(value: str) -> bool:
    """What ``key=`` and ``id=`` accept: printable ASCII without spaces."""
    return TOKEN.fullmatch(value) is not None
