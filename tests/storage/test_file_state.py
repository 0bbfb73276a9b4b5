"""The file state store keeps the data layout of earlier releases, file for file, so a
data dir written before the state seam opens unchanged (README, Data layout)."""

from __future__ import annotations

import resource
from pathlib import Path

from linemq.broker.storage.file_state import FileStateStore, journal_fd_limit
from linemq.broker.storage.journal import Journal
from linemq.broker.storage.state_store import EventLog


def _open(data: Path) -> FileStateStore:
    store = FileStateStore(data)
    store.open(lambda log: None)
    return store


def _write(*logs: EventLog) -> None:
    for log in logs:
        log.write()


def test_each_kind_of_state_has_its_file_of_earlier_releases(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = _open(data)
    group, patterns = store.group_log("orders", "billing"), store.patterns_log()
    replays, schedules = store.replay_log("orders"), store.schedules_log()
    for log in (group, patterns, replays, schedules):
        log.append({"k": 1})
    _write(group, patterns, replays, schedules)
    store.mark_dedup("orders")
    store.close()
    files = sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())
    assert files == [
        ".schedules",
        "dedup/orders",
        "groups/.patterns.journal",
        "groups/orders/billing.journal",
        "replays/orders.journal",
    ]
    # Written as a Journal of an earlier release wrote them: the same bytes.
    old = Journal(tmp_path / "old.journal")
    old.append({"k": 1})
    old.close()
    assert (data / ".schedules").read_bytes() == (tmp_path / "old.journal").read_bytes()


def test_a_data_dir_of_an_earlier_release_opens_unchanged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for path, entry in (
        (data / "groups" / "t" / "g.journal", {"e": "start", "o": 1}),
        (data / "groups" / "_patterns.journal", {"p": "t.*", "g": "g"}),  # linemq 0.1.0
        (data / "replays" / "t.journal", {"mark": 1}),
    ):
        journal = Journal(path)
        journal.append(entry)
        journal.close()
    (data / "groups" / "not a topic").mkdir()
    (data / "groups" / "t" / ".g.journal.tmp").write_bytes(b"an unfinished snapshot")
    store = _open(data)
    assert store.groups() == [("t", "g")]
    assert store.group_log("t", "g").replay() == [{"e": "start", "o": 1}]
    assert store.patterns_log().replay() == [{"p": "t.*", "g": "g"}], "moved to its new name"
    assert not (data / "groups" / "_patterns.journal").exists()
    assert store.replay_log("t").replay() == [{"mark": 1}]


def test_journals_share_the_open_files_limit_as_it_is_at_open(tmp_path: Path) -> None:
    """The broker raises its open-files limit after building its stores."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lower = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
    try:
        store = FileStateStore(tmp_path / "data")
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        store.open(lambda log: None)
        assert store.files.limit == journal_fd_limit()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_deleting_a_group_never_written_is_durable_at_once(tmp_path: Path) -> None:
    """A group made and deleted before the tick wrote its first line has no folder."""
    store = _open(tmp_path / "data")
    store.group_log("fresh", "g").append({"e": "start", "o": 1})
    store.delete_group("fresh", "g")
    await store.sync_deletes(["fresh"])
    await store.drop_topic("fresh")
    assert store.groups() == []
