"""A group's ``snap`` line: read whole or not at all, without sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from linemq.broker.delivery.group_snapshot import read_snapshot
from linemq.broker.delivery.lifecycle import GroupState
from linemq.broker.storage.checksum import seal
from linemq.broker.storage.journal import Journal

GOOD = b'"e":"snap","start":1,"cursor":9,"completed":8,"dead":0,"pending":[]'


def test_a_snapshot_with_a_setting_no_release_wrote_is_refused_whole() -> None:
    with pytest.raises(ValueError):
        read_snapshot({"e": "snap", "start": 1, "cursor": 9, "completed": 8, "dead": 0,
                       "pending": [], "ordering": "sideways"})  # fmt: skip


def test_a_refused_snapshot_changes_nothing_its_floor_line_is_kept(tmp_path: Path) -> None:
    """Everything below the floor was done; the refused snapshot's cursor is not half applied:
    the group starts again at the floor, so nothing is skipped."""
    path = tmp_path / "g.journal"
    lines = [b'{"e":"floor","o":4}', b"{" + GOOD + b',"ordering":"sideways"}']
    path.write_bytes(b"".join(seal(line) for line in lines))
    state = GroupState(Journal(path))
    assert state.load()
    assert (state.cursor, state.completed, state.ordering) == (4, 0, "key")


def test_a_snapshot_of_an_earlier_release_reads_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "g.journal"
    path.write_bytes(seal(b'{"e":"floor","o":9}') + seal(b"{" + GOOD + b"}"))
    state = GroupState(Journal(path))
    assert state.load()
    assert (state.cursor, state.completed, state.acked_count, state.failures) == (9, 8, 8, {})
    assert (state.paused, state.ordering, state.overrides, state.filter) == (False, "key", {}, None)
