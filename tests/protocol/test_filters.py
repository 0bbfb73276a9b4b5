"""The header-filter grammar (``SUB ... filter=``), pure: parsing, matching, canonical text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linemq.broker.protocol import ProtocolError, Sub, parse_line
from linemq.broker.protocol.filters import FilterError, equals_test, parse_filter, parse_test

NAMES = st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True)
VALUES = st.text(max_size=20)


@pytest.mark.parametrize(
    ("test", "headers", "holds"),
    [
        ("h.type=email", {"type": "email"}, True),
        ("h.type=email", {"type": "Email"}, False),
        ("h.type=email", None, False),
        ("h.type=email|sms", {"type": "sms"}, True),
        ("h.type=", {"type": ""}, True),
        ("h.type=", {}, False),
        ("h.type==", {"type": "="}, True),  # as PUT reads h.type==
        ("h.type!=email", {"type": "sms"}, True),
        ("h.type!=email", {"type": "email"}, False),
        ("h.type!=email", None, True),
        ("h.type", {"type": ""}, True),
        ("h.type", {"other": "x"}, False),
        ("!h.type", None, True),
        ("!h.type", {"type": "x"}, False),
        ("h.k=x%7Cy|z", {"k": "x|y"}, True),
        ("h.k=caf%C3%A9", {"k": "café"}, True),
    ],
)
def test_each_form_of_test(test: str, headers: dict[str, str] | None, holds: bool) -> None:
    assert parse_filter([test]).matches(headers) is holds


@pytest.mark.parametrize(
    "bad", ["", "type=email", "h.=x", "!h.type=x", "h.a%20b=x", "H.type=x", "h.ty pe=x", "h.t=%FF"]
)
def test_what_is_not_a_test(bad: str) -> None:
    with pytest.raises(FilterError, match="invalid filter"):
        parse_test(bad)


def test_several_tests_must_all_hold_and_their_order_does_not_matter() -> None:
    one = parse_filter(["h.lang=fr", "h.type=email|sms"])
    assert one == parse_filter(["h.type=sms|email", "h.lang=fr", "h.lang=fr"])
    assert one.matches({"lang": "fr", "type": "sms"})
    assert not one.matches({"lang": "en", "type": "sms"})
    assert str(one) == "filter=h.lang=fr filter=h.type=email|sms"
    assert not one.plain and parse_filter(["!h.debug"]).plain
    with pytest.raises(FilterError, match="too many filters"):
        parse_filter([f"h.n{i}" for i in range(17)])


@given(st.dictionaries(NAMES, st.lists(VALUES, min_size=1, max_size=3), min_size=1, max_size=3))
def test_canonical_text_reads_back_to_the_same_filter(spec: dict[str, list[str]]) -> None:
    header_filter = parse_filter(equals_test(name, values) for name, values in spec.items())
    assert parse_filter(header_filter.texts) == header_filter
    assert header_filter.matches({name: values[-1] for name, values in spec.items()})
    assert all(" " not in t for t in header_filter.texts)


def test_sub_takes_filters_anywhere_after_the_group() -> None:
    cmd = parse_line(b"SUB t g filter=h.a from=earliest ordering=fifo filter=!h.b")
    assert isinstance(cmd, Sub)
    assert (cmd.topic, cmd.group, cmd.ordering) == ("t", "g", "fifo")
    assert cmd.filter == parse_filter(["h.a", "!h.b"])
    assert cmd.start is not None and cmd.start.kind == "earliest"
    plain = parse_line(b"SUB t g")
    assert isinstance(plain, Sub) and plain.filter is None


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"SUB t.* g filter=h.a", "filter= is not supported for wildcard groups"),
        (b"SUB t filter=h.a", "invalid group name"),
        (b"SUB filter=h.x t filter=h.a", "invalid topic name"),
        (b"SUB t g filter=x", "invalid filter: x (h.<name>=<value>[|<value>...], "),
    ],
)
def test_sub_refuses_a_filter_it_cannot_take(line: bytes, error: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_line(line)
    assert str(info.value).startswith(error)
