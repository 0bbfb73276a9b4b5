"""``FileStore.commit``: one write in all (the write-ahead log), or one per touched segment
file without it, however the appends were spread."""

from __future__ import annotations

from pathlib import Path

import pytest

from linemq.broker.storage import topic_log, wal
from linemq.broker.storage.store import FileStore


@pytest.mark.parametrize("with_wal", [True, False], ids=["wal", "no-wal"])
async def test_a_commit_writes_once_however_many_topics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_wal: bool
) -> None:
    store = FileStore(tmp_path, wal=with_wal)
    store.open()
    topics = [f"t{i}" for i in range(20)]
    first = store.append_batch({t: ["first"] for t in topics}, 1.0, [f"f{t}" for t in topics])
    store.commit()
    await first
    writes: list[int] = []

    def counting(real):  # type: ignore[no-untyped-def]
        def write(fd: int, data: bytes) -> None:
            writes.append(fd)
            real(fd, data)

        return write

    monkeypatch.setattr(topic_log, "write_all", counting(topic_log.write_all))
    monkeypatch.setattr(wal, "write_all", counting(wal.write_all))
    for n in range(10):  # ten reads, each spread over every topic
        batch = {t: [f"{t}-{n}-{i}" for i in range(5)] for t in topics[n % 3 :]}
        store.append_batch(batch, 2.0, [f"id{n}-{k}" for k in range(sum(map(len, batch.values())))])
    done = store.commit()
    await done.ticket
    want = 1 if with_wal else len(topics)
    assert len(writes) == want, "one write() per commit (per topic without the log)"
    assert all(len(done.written[t]) == 5 * sum(1 for n in range(10) if t in topics[n % 3 :])
               for t in topics)  # fmt: skip
    store.close()
    reopened = FileStore(tmp_path)
    reopened.open()
    for t in topics:
        assert len(await reopened.read(t, 1, 1000)) == 1 + len(done.written[t])
    reopened.close()
