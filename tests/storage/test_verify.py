"""``verify_topics`` finds every damaged place without changing a byte; ``repair_topics``
does what a start-up would and says so."""

from __future__ import annotations

import pathlib

from storage_helpers import fill, segment_files

from linemq.broker.storage.damage import INDEX, RECORD, SEGMENT
from linemq.broker.storage.store import FileStore
from linemq.broker.storage.topic_log import TopicLog
from linemq.broker.storage.verify import repair_topics, verify_topics
from linemq.broker.storage.wal import WAL_DIR


def _data(tmp_path: pathlib.Path) -> pathlib.Path:
    data = tmp_path / "data"
    for name in ("a", "b"):
        log = TopicLog.open(data / "topics", name, 1000)
        fill(log, 40)
        log.close()
    return data


def _snapshot(data: pathlib.Path) -> dict[pathlib.Path, bytes]:
    return {p: p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}


def test_a_clean_data_dir_verifies_clean(tmp_path: pathlib.Path) -> None:
    data = _data(tmp_path)
    assert verify_topics(data) == []
    assert repair_topics(data) == []


def test_verify_lists_each_damage_and_changes_nothing(tmp_path: pathlib.Path) -> None:
    data = _data(tmp_path)
    segs = segment_files(data / "topics" / "a")
    lines = segs[0].read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b"linemq_segment", b"linemq_segmXnt")  # the header
    lines[3] = lines[3].replace(b'"msg":"m3"', b'"msg":"m9"')
    segs[0].write_bytes(b"".join(lines))
    idx = segs[1].with_suffix(".idx")
    idx.write_bytes(b"\xff" * 16)
    with segs[-1].open("ab") as f:
        f.write(b'{"id":"msg_41","off')
    last_b = segment_files(data / "topics" / "b")[0]
    b_lines = last_b.read_bytes().splitlines(keepends=True)
    b_lines[2] = b"\x00" * (len(b_lines[2]) - 1) + b"\n"
    last_b.write_bytes(b"".join(b_lines))
    before = _snapshot(data)

    found = verify_topics(data)

    assert _snapshot(data) == before
    got = sorted((d.topic or "", d.kind, d.path.rsplit("/", 1)[1], d.first or 0) for d in found)
    assert got == sorted(
        [
            ("a", SEGMENT, segs[0].name, 0),
            ("a", RECORD, segs[0].name, 3),
            ("a", INDEX, idx.name, 0),
            ("a", RECORD, segs[-1].name, 0),
            ("b", RECORD, last_b.name, 2),
        ]
    )
    reasons = {d.reason for d in found if d.kind == RECORD}
    assert reasons == {"failed its check", "torn tail"}


def test_repair_does_what_a_start_would_and_says_what_it_did(tmp_path: pathlib.Path) -> None:
    data = _data(tmp_path)
    last = segment_files(data / "topics" / "a")[-1]
    size = last.stat().st_size
    with last.open("ab") as f:
        f.write(b'{"id":"msg_41","off')
    middle = segment_files(data / "topics" / "b")[1]
    lines = middle.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b"m", b"M", 1)
    middle.write_bytes(b"".join(lines))

    done = repair_topics(data)

    assert done == [f"{last}: cut 19 bytes at {size} (torn or damaged tail)"]
    assert last.stat().st_size == size
    assert [d.reason for d in verify_topics(data)] == ["failed its check"]  # kept, skipped
    assert repair_topics(data) == []
    log = TopicLog.open(data / "topics", "a", 1000)
    assert [r.offset for r in log.read(1, 100)] == list(range(1, 41))


async def test_repair_replays_the_write_ahead_log_a_crash_left(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "data"
    store = FileStore(data)
    store.open()
    for n in range(2):  # the first makes the topics, the second is only in the log
        batch = {t: [f"{t}{n}"] for t in ("a", "b")}
        ticket = store.append_batch(batch, 1.0, [f"id{n}a", f"id{n}b"])
        store.commit()
        await ticket
    wal = sorted((data / WAL_DIR).glob("*.wal"))  # the store is left as a kill -9 leaves it
    wal[-1].write_bytes(wal[-1].read_bytes().replace(b'"msg":"b1"', b'"msg":"b7"'))
    found = verify_topics(data)
    assert [(d.kind, d.topic, d.first, d.path) for d in found] == [(RECORD, "b", 2, str(wal[-1]))]
    done = repair_topics(data)
    assert done[-1] == f"{wal[-1]}: replayed into the segments, removed"
    assert any("topics/a/" in line for line in done)
    assert list((data / WAL_DIR).glob("*.wal")) == []
    reopened = TopicLog.open(data / "topics", "a")
    assert [r.msg for r in reopened.read(1, 10)] == ["a0", "a1"]
    reopened.close()
