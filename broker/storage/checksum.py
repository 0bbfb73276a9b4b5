"""CRC32C for stored lines: a line is its text, a space, and eight hex digits of its check.

CRC32C (Castagnoli) is what Kafka and ext4 use: hardware-accelerated in the
``crc32c`` package, so the check costs far less than encoding the line.
"""

from __future__ import annotations

from typing import Final

from crc32c import crc32c

CHECK_BYTES: Final = 9  # " " and eight hex digits, before the newline


def seal(body: bytes) -> bytes:
    """``body`` (one line, no newline) with its check and a newline."""
    return b"%b %08x\n" % (body, crc32c(body))


def unseal(line: bytes) -> bytes | None:
    """The text of a sealed ``line`` (newline stripped or not), or None if its check fails."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if len(line) <= CHECK_BYTES or line[-CHECK_BYTES] != 0x20:
        return None
    digits = line[-8:]
    if not digits.isalnum():
        return None
    try:
        want = int(digits, 16)
    except ValueError:
        return None
    body = line[:-CHECK_BYTES]
    return body if crc32c(body) == want else None
