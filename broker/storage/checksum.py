"""Per-line checksums that keep a line valid JSON: ``{...,"c":<crc32c>}``.

The CRC32C covers every byte of the line before ``,"c":`` (the record's JSON
without its closing brace), so a changed byte anywhere in the record, its
offset included, fails the check, while ``jq`` and ``tail`` still read the line.
CRC32C because it is what Kafka and ext4 use, has hardware support, and the
``crc32c`` package computes it in C for about the cost of a line's JSON dump.
"""

from __future__ import annotations

from typing import Final

from crc32c import crc32c

CHECK_FIELD: Final = b',"c":'
CHECK_SUFFIX: Final = b',"c":%d}\n'  # formatted with the CRC, after the body
_MAX_DIGITS: Final = 10  # 2**32 - 1 has ten digits


def seal(dumped: bytes) -> bytes:
    """A line from an object's JSON (``dumped`` ends with ``}``): the check added, then LF."""
    body = dumped[:-1]
    return body + (CHECK_SUFFIX % crc32c(body))


def check(line: bytes) -> bool:
    """True if ``line`` (with or without its LF) ends with a check field that matches."""
    end = len(line) - 1
    if end >= 0 and line[end] == 10:  # b"\n"
        end -= 1
    if end < 0 or line[end] != 125:  # b"}"
        return False
    cut = line.rfind(CHECK_FIELD, 0, end)
    if cut < 0:
        return False
    digits = line[cut + len(CHECK_FIELD) : end]
    if not 0 < len(digits) <= _MAX_DIGITS or not digits.isdigit():
        return False
    return crc32c(line[:cut]) == int(digits)


def unseal(line: bytes) -> bytes | None:
    """The JSON object a sealed line holds, without its check field; None if the check fails.

    Journals use the same sealed lines as segments: one check format in the data dir.
    """
    if not check(line):
        return None
    return line[: line.rfind(CHECK_FIELD)] + b"}"
