"""Topic and group names: the only client input that ever reaches a file path."""

import re
from typing import Final

MAX_NAME_LENGTH: Final = 200
_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


def is_valid_name(name: str) -> bool:
    """``[A-Za-z0-9_.-]``, 1-200 chars, no leading dot, no ``..``: safe as a file name."""
    return _NAME.fullmatch(name) is not None and not name.startswith(".") and ".." not in name
