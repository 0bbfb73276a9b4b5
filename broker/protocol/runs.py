"""Shortcuts for the lines that are most of a broker's traffic: ``PUB`` and ``ACK``.

A publisher pipelines PUBs to one topic and a consumer acks every message, so a
whole read is often one command repeated. These functions check such a span
with a few ``bytes`` calls and split it. Anything unusual gives None: the caller
then parses line by line, which gives the same answers.
"""

from __future__ import annotations

import re
from typing import Final

_CONTROL: Final = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")
_PUB_LINE: Final = re.compile(r"^PUB ([^ \n]+) ([^\n]+)\n", re.MULTILINE)


def pub_line(line: bytes, max_bytes: int) -> tuple[str, str] | None:
    """``(topic, message)`` of a plain ``PUB <topic> <message>`` line (LF removed), or None.

    None for anything the line parser should answer: no message, a message over
    ``max_bytes``, invalid UTF-8 or a NUL. A trailing CR is dropped, as there.
    The topic is not checked: the caller knows which topics it already vetted.
    """
    space = line.find(b" ", 4)
    if space < 0:
        return None
    # Indexing and str's ``in`` over bytes methods: on CPython 3.11 each of those
    # parses its arguments, and ``bytes in bytes`` raises and clears a TypeError.
    body = line[space + 1 : -1] if line[-1] == 0x0D else line[space + 1 :]
    if not body or len(body) > max_bytes:
        return None
    try:
        msg = body.decode()
        topic = line[4:space].decode()
    except UnicodeDecodeError:
        return None
    return None if "\x00" in msg else (topic, msg)


def pub_lines(span: bytes) -> list[tuple[str, str]] | None:
    """``(topic, message)`` of each line of a span of ``PUB`` lines to any topics.

    None unless every line is a plain ``PUB <topic> <message>`` that ``pub_line``
    accepts the same way (no CR, no NUL, valid UTF-8, a non-empty message).
    """
    if b"\r" in span or b"\x00" in span:
        return None
    try:
        text = span.decode()
    except UnicodeDecodeError:
        return None
    pairs = _PUB_LINE.findall(text)
    return pairs if len(pairs) == text.count("\n") else None


def only_argument(line: bytes) -> str | None:
    """``CMD <arg>`` with exactly one plain argument, or None for anything unusual."""
    arg = line[line.find(b" ") + 1 :]
    if arg.endswith(b"\r"):
        arg = arg[:-1]
    if not arg or not arg.isascii():
        return None
    text = arg.decode()
    return text if text.isprintable() and " " not in text else None


def pub_bodies(span: bytes, prefix: bytes) -> list[str] | None:
    """The messages of ``PUB <topic> <message>`` lines that all start with ``prefix``.

    None for a CR (the line path strips it), a NUL, an empty message, or
    invalid UTF-8; the line path answers those.
    """
    if b"\r" in span or b"\x00" in span or prefix + b"\n" in span:
        return None
    try:
        text = span.decode()
    except UnicodeDecodeError:
        return None
    skip = len(prefix.decode())
    return [line[skip:] for line in text[:-1].split("\n")]


def ack_ids(span: bytes, prefix: bytes = b"ACK ") -> list[str] | None:
    """The ids of ``ACK <id>`` lines, each as ``only_argument`` would give it."""
    if not span.isascii() or _CONTROL.search(span) or prefix + b"\n" in span:
        return None
    lines = span.decode()[:-1].split("\n")
    if span.count(b" ") != len(lines):  # an id with a space is not one plain argument
        return None
    skip = len(prefix)
    return [line[skip:] for line in lines]
