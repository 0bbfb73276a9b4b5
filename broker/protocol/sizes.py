"""One way to read a size in bytes, for the broker's flags (and anything else that takes one).

``1048576``, ``64MiB``, ``1GB``, ``1.5GiB``: a number and an optional unit, decimal
(``kB``, ``MB``, ``GB``, ``TB``) or binary (``KiB``, ``MiB``, ``GiB``, ``TiB``), case
ignored. Pure and dependency-free, beside ``durations``. Negative, NaN and infinite
sizes are refused with a message that says so, never a traceback later.
"""

from __future__ import annotations

import re
from typing import Final

_SIZE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(b|[kmgt]i?b)?", re.IGNORECASE)
_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(text: str) -> int:
    """Bytes from ``1048576``, ``500MB``, ``64MiB``, ``1GB``; ValueError for anything else.

    A fraction of a byte is dropped (``1.5kB`` is 1500, ``0.5`` is 0).
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"invalid size {text!r}: use a number of bytes not below 0, e.g. 500MB or 1GiB"
        )
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])
