from __future__ import annotations

import pathlib

from linemq.broker.storage import FileStore, Store


def test_get_never_creates_anything(tmp_path: pathlib.Path) -> None:
    store = FileStore(tmp_path / "data")
    store.open()
    assert store.get("nope") is None
    assert list((tmp_path / "data" / "topics").iterdir()) == []
    assert store.topics() == []


def test_topic_creates_lazily_and_is_reopened(tmp_path: pathlib.Path) -> None:
    store = FileStore(tmp_path, segment_bytes=1000)
    store.open()
    orders = store.topic("orders")
    assert store.topic("orders") is orders
    assert not (tmp_path / "topics" / "orders").exists()
    orders.append("a", 1.0, "msg_1")
    store.topic("audit.v2").append("b", 2.0, "msg_2")
    assert {t.name for t in store.pending_logs()} == {"orders", "audit.v2"}
    for t in store.pending_logs():
        t.write()
    assert store.pending_logs() == []
    store.close()

    again = FileStore(tmp_path, segment_bytes=1000)
    again.open()
    assert again.topics() == ["audit.v2", "orders"]
    got = again.get("orders")
    assert got is not None and got.last_offset == 1 and got.read(1, 5)[0].msg == "a"
    again.close()


def test_close_writes_pending(tmp_path: pathlib.Path) -> None:
    store = FileStore(tmp_path)
    store.open()
    store.topic("t").append("buffered", 1.0, "msg_1")
    store.close()
    again = FileStore(tmp_path)
    again.open()
    t = again.get("t")
    assert t is not None and t.read(1, 1)[0].msg == "buffered"


def test_foreign_directories_are_ignored(tmp_path: pathlib.Path) -> None:
    (tmp_path / "topics" / ".trash").mkdir(parents=True)
    (tmp_path / "topics" / "stray.txt").write_text("x")
    store = FileStore(tmp_path)
    store.open()
    assert store.topics() == []


def test_file_store_satisfies_store_protocol(tmp_path: pathlib.Path) -> None:
    store: Store = FileStore(tmp_path)
    assert store.topics() == []
