"""A client remembers why its recent ids were taken back, within a bound."""

from __future__ import annotations

from linemq.broker.delivery.clients import FORGOTTEN_IDS, GONE, ClientState


def test_the_newest_reasons_are_kept_and_the_memory_is_bounded() -> None:
    client = ClientState(GONE)
    for i in range(10 * FORGOTTEN_IDS + 7):
        client.forget(f"id{i}", "acked" if i % 2 else "nacked")
        assert len(client.forgotten) < 2 * FORGOTTEN_IDS
        newest = range(max(0, i - FORGOTTEN_IDS + 1), i + 1)
        assert all(f"id{k}" in client.forgotten for k in newest)
    assert client.forgotten[f"id{10 * FORGOTTEN_IDS + 6}"] == "nacked"
