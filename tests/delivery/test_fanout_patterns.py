"""Wildcard fanout: a pattern change costs what the pattern matches, and answers stay exact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import linemq.broker.delivery.patterns as patterns_module
from linemq.broker.delivery.patterns import FanoutPatterns
from linemq.broker.protocol import topic_matches

TOKENS = ["a", "b", "c"]
_topic = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=4).map(".".join)
_pattern = st.lists(st.sampled_from([*TOKENS, "*", ">"]), min_size=1, max_size=4).map(".".join)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("ask"), _topic),
        st.tuples(st.just("add"), _pattern),
        st.tuples(st.just("remove"), _pattern),
    ),
    max_size=60,
)


@given(_steps)
def test_answers_equal_matching_every_active_pattern(steps: list[tuple[str, str]]) -> None:
    fanout = FanoutPatterns()
    active: set[str] = set()
    asked: set[str] = set()
    for verb, name in steps:
        if verb == "add":
            fanout.added(name)
            active.add(name)
        elif verb == "remove":
            fanout.removed(name)
            active.discard(name)
        else:
            asked.add(name)
        for topic in asked:
            want = {p for p in active if topic_matches(p, topic)}
            got = fanout.matching(topic)
            assert set(got) == want and len(got) == len(want)


def test_churning_a_pattern_leaves_other_topics_answers_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fanout = FanoutPatterns()
    fanout.added("orders.*")
    topics = [f"t{i}.x" for i in range(5000)] + ["orders.eu"]
    answers = {topic: fanout.matching(topic) for topic in topics}
    calls = 0
    real = patterns_module.topic_matches

    def counting(pattern: str, topic: str) -> bool:
        nonlocal calls
        calls += 1
        return real(pattern, topic)

    monkeypatch.setattr(patterns_module, "topic_matches", counting)
    for _ in range(1000):
        fanout.added("billing.>")
        fanout.removed("billing.>")
        fanout.added("orders.*")  # already there: nothing to do
    assert calls == 0  # no topic's answer was recomputed, none was even compared
    for topic in topics:
        assert fanout.matching(topic) is answers[topic]  # the very same cached answer
    assert calls == 0
    fanout.added("*.eu")
    assert fanout.matching("orders.eu") == ["orders.*", "*.eu"]
    assert fanout.matching("t1.x") is answers["t1.x"]
    fanout.removed("orders.*")
    assert fanout.matching("orders.eu") == ["*.eu"]


def test_a_full_wildcard_reaches_every_cached_topic_once() -> None:
    fanout = FanoutPatterns()
    for topic in ("a", "a.b", "a.b.c", "b"):
        assert fanout.matching(topic) == []
    fanout.added(">")
    fanout.added("a.>")
    assert {t: fanout.matching(t) for t in ("a", "a.b", "a.b.c", "b")} == {
        "a": [">"],
        "a.b": [">", "a.>"],
        "a.b.c": [">", "a.>"],
        "b": [">"],
    }
