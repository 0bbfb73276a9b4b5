"""What every ``StateStore`` promises about the state it names (storage/state_store.py):
the groups there are after a restart, deletions, replay logs, dedup markers, and names
that can only ever mean a topic or a group."""

from __future__ import annotations

import pytest

from tests.storage.conformance.state_kits import StateKit


def test_groups_are_found_again_after_a_restart(state_kit: StateKit) -> None:
    opened = state_kit.open()
    store = opened.store
    for topic, group in (("orders", "billing"), ("orders", "audit"), ("a.b", "g-1")):
        store.group_log(topic, group).append({"e": "start", "o": 1})
    store.patterns_log().append({"p": "orders.*", "g": "billing"})
    store.replay_log("orders").append({"mark": 1})
    store.schedules_log().append({"job": "x"})
    opened.tick()
    opened.store.close()

    again = state_kit.open()
    assert again.store.groups() == [("a.b", "g-1"), ("orders", "audit"), ("orders", "billing")]
    again.store.close()


async def test_a_deleted_group_is_not_found_again(state_kit: StateKit) -> None:
    opened = state_kit.open()
    store = opened.store
    for group in ("keep", "drop"):
        store.group_log("t", group).append({"e": "start", "o": 1})
    opened.tick()
    store.delete_group("t", "drop")
    await store.sync_deletes(["t"])
    assert store.groups() == [("t", "keep")]
    store.close()

    again = state_kit.open()
    assert again.store.groups() == [("t", "keep")]
    made_again = again.store.group_log("t", "drop")
    assert made_again.replay() == [], "a group made again under the name starts empty"
    made_again.append({"e": "start", "o": 9})
    again.tick()
    assert again.store.groups() == [("t", "drop"), ("t", "keep")]
    again.store.close()


async def test_a_deleted_topic_leaves_no_groups(state_kit: StateKit) -> None:
    opened = state_kit.open()
    store = opened.store
    for group in ("a", "b"):
        store.group_log("gone", group).append({"e": "start", "o": 1})
    store.group_log("other", "a").append({"e": "start", "o": 1})
    opened.tick()
    for group in ("a", "b"):
        store.delete_group("gone", group)
    await store.drop_topic("gone")
    await store.drop_topic("never-had-groups")
    store.close()
    assert state_kit.open().store.groups() == [("other", "a")]


def test_a_replay_log_is_deleted_whether_opened_or_not(state_kit: StateKit) -> None:
    opened = state_kit.open()
    store = opened.store
    for topic in ("opened", "closed"):
        store.replay_log(topic).append({"dlq": 1, "offset": 1, "id": "x", "ts": 1.0})
    opened.tick()
    store.close()

    again = state_kit.open()
    store = again.store
    assert store.replay_log("opened").replay() != []
    store.delete_replay("opened")
    store.delete_replay("closed")  # never opened since the restart
    store.delete_replay("never")
    store.close()
    third = state_kit.open().store
    assert third.replay_log("opened").replay() == []
    assert third.replay_log("closed").replay() == []


def test_state_logs_are_kept_apart(state_kit: StateKit) -> None:
    """A topic's replay log, its groups, the patterns and the schedules never share."""
    opened = state_kit.open()
    store = opened.store
    logs = {
        "group": store.group_log("t", "g"),
        "group2": store.group_log("t", "t"),
        "replay": store.replay_log("t"),
        "patterns": store.patterns_log(),
        "schedules": store.schedules_log(),
    }
    for name, log in logs.items():
        log.append({"which": name})
    opened.tick()
    store.close()
    again = state_kit.open().store
    assert again.group_log("t", "g").replay() == [{"which": "group"}]
    assert again.group_log("t", "t").replay() == [{"which": "group2"}]
    assert again.replay_log("t").replay() == [{"which": "replay"}]
    assert again.patterns_log().replay() == [{"which": "patterns"}]
    assert again.schedules_log().replay() == [{"which": "schedules"}]


def test_dedup_markers_survive_a_restart_until_unmarked(state_kit: StateKit) -> None:
    store = state_kit.open().store
    assert store.dedup_topics() == []
    for topic in ("b", "a", "b"):
        store.mark_dedup(topic)
    assert store.dedup_topics() == ["a", "b"]
    store.close()
    again = state_kit.open().store
    assert again.dedup_topics() == ["a", "b"]
    again.unmark_dedup("b")
    again.unmark_dedup("never")
    again.close()
    third = state_kit.open().store
    assert third.dedup_topics() == ["a"]
    third.mark_dedup("b")  # a topic made again under the name
    assert third.dedup_topics() == ["a", "b"]


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "", "x" * 201, "a..b", "t\n"])
def test_no_name_reaches_outside_its_own_state(state_kit: StateKit, name: str) -> None:
    """Names are checked above the seam already; a store refuses any other all the same."""
    store = state_kit.open().store
    for use in (
        lambda: store.group_log(name, "g"),
        lambda: store.group_log("t", name),
        lambda: store.replay_log(name),
        lambda: store.delete_group("t", name),
        lambda: store.delete_replay(name),
        lambda: store.mark_dedup(name),
    ):
        with pytest.raises(ValueError):
            use()
    assert store.groups() == [] and store.dedup_topics() == []
