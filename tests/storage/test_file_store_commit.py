"""``FileStore.commit``: one write per touched segment file, however the appends were spread."""

from __future__ import annotations

from pathlib import Path

import pytest

from linemq.broker.storage import topic_log
from linemq.broker.storage.store import FileStore


async def test_a_commit_writes_each_touched_log_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path)
    store.open()
    topics = [f"t{i}" for i in range(20)]
    first = store.append_batch({t: ["first"] for t in topics}, 1.0, [f"f{t}" for t in topics])
    store.commit()  # segments exist now: later commits append to them
    await first
    writes: list[int] = []
    real = topic_log.write_all

    def counting(fd: int, data: bytes) -> None:
        writes.append(fd)
        real(fd, data)

    monkeypatch.setattr(topic_log, "write_all", counting)
    for n in range(10):  # ten reads, each spread over every topic
        batch = {t: [f"{t}-{n}-{i}" for i in range(5)] for t in topics[n % 3 :]}
        store.append_batch(batch, 2.0, [f"id{n}-{k}" for k in range(sum(map(len, batch.values())))])
    done = store.commit()
    await done.ticket
    assert len(writes) == len(topics), "one write() per topic, none per message"
    assert all(len(done.written[t]) == 5 * sum(1 for n in range(10) if t in topics[n % 3 :])
               for t in topics)  # fmt: skip
    store.close()
