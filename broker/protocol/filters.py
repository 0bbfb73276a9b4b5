"""Header filters of a consumer group: ``SUB <topic> <group> filter=<test> ...``.

A pure value grammar (like names and durations), shared by the parser, the
group's journal (which stores a filter in its canonical text) and the clients.

=====================  ==================================================
test                   a message matches when
=====================  ==================================================
``h.<name>=<v>[|<w>]`` it has the header and its value is one of those
``h.<name>!=<v>[|<w>]`` it has no such header, or a value none of those
``h.<name>``           it has the header (any value)
``!h.<name>``          it has no such header
=====================  ==================================================

Several tests on one group must all hold. Values are percent-encoded UTF-8 as in
``PUT``'s ``h.<name>=``; a literal ``|`` in a value is ``%7C``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote_to_bytes

MAX_TESTS: Final = 16
"""Tests a group's filter may have."""
MAX_TEST_CHARS: Final = 4096
_TEST: Final = re.compile(r"(!?)h\.([A-Za-z0-9_.\-]{1,100})(?:(!?=)(.*))?", re.DOTALL)
FILTER_SYNTAX: Final = "h.<name>=<value>[|<value>...], h.<name>!=<value>, h.<name> or !h.<name>"


class FilterError(ValueError):
    """A test that is not in the grammar above; ``str()`` is the ERR text."""


@dataclass(frozen=True, slots=True)
class HeaderTest:
    """One test. ``values`` is None for a presence (or, ``negate``, absence) test."""

    name: str
    values: frozenset[str] | None
    negate: bool

    def holds(self, headers: Mapping[str, str] | None) -> bool:
        value = headers.get(self.name) if headers else None
        if self.values is None:
            return (value is not None) != self.negate
        return (value is not None and value in self.values) != self.negate

    @property
    def text(self) -> str:
        """The canonical wire form: values sorted and escaped."""
        if self.values is None:
            return ("!" if self.negate else "") + "h." + self.name
        op = "!=" if self.negate else "="
        return f"h.{self.name}{op}" + "|".join(_escape(v) for v in sorted(self.values))


@dataclass(frozen=True, slots=True)
class HeaderFilter:
    """The tests of one group, sorted by their text, so equal filters compare equal."""

    tests: tuple[HeaderTest, ...]

    def matches(self, headers: Mapping[str, str] | None) -> bool:
        for test in self.tests:  # noqa: SIM110 (per record taken: no generator each)
            if not test.holds(headers):
                return False
        return True

    @property
    def plain(self) -> bool:
        """Whether a message without headers (plain ``PUB``) matches."""
        return self.matches(None)

    @property
    def texts(self) -> list[str]:
        return [t.text for t in self.tests]

    def __str__(self) -> str:
        """As a ``SUB`` line would give it: ``filter=<test> filter=<test>``."""
        return " ".join(f"filter={t}" for t in self.texts)


def parse_test(text: str) -> HeaderTest:
    """One test, as written after ``filter=``."""
    match = _TEST.fullmatch(text) if len(text) <= MAX_TEST_CHARS else None
    if match is None:
        raise FilterError(f"invalid filter: {text[:100]} ({FILTER_SYNTAX})")
    bang, name, op, values = match.groups()
    if op is None:
        return HeaderTest(name, None, negate=bool(bang))
    if bang:
        raise FilterError(f"invalid filter: {text[:100]} ({FILTER_SYNTAX})")
    try:
        decoded = frozenset(unquote_to_bytes(v).decode() for v in values.split("|"))
    except UnicodeDecodeError:
        why = "values are percent-encoded UTF-8"
        raise FilterError(f"invalid filter: {text[:100]} ({why})") from None
    return HeaderTest(name, decoded, negate=op == "!=")


def parse_filter(texts: Iterable[str]) -> HeaderFilter:
    """Every ``filter=`` of a ``SUB`` (or a journal's canonical texts), as one filter."""
    tests = sorted({parse_test(t) for t in texts}, key=lambda t: t.text)
    if not tests:
        raise FilterError(f"invalid filter: empty ({FILTER_SYNTAX})")
    if len(tests) > MAX_TESTS:
        raise FilterError(f"too many filters (at most {MAX_TESTS})")
    return HeaderFilter(tuple(tests))


def equals_test(name: str, values: str | Iterable[str]) -> str:
    """``h.<name>=<v>|<w>`` for raw values (escaped here): how a client builds a test."""
    values = [values] if isinstance(values, str) else list(values)
    return f"h.{name}=" + "|".join(_escape(v) for v in values)


def _escape(value: str) -> str:
    """Percent-escape what would break a ``SUB`` line or the grammar: spaces, controls,
    ``%``, ``=``, ``|``, non-ASCII."""
    return "".join(
        chr(b) if 0x20 < b < 0x7F and b not in (0x25, 0x3D, 0x7C) else f"%{b:02X}"
        for b in value.encode()
    )
