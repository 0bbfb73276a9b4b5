"""GET /api/series: message rates and group lag over the last samples, as the charts draw them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from linemq.broker.auth import hash_token
from linemq.broker.observe.series import RATES, Series
from tests.conftest import BrokerFactory
from tests.ops.http import Http, dead_letter, wire
from tests.server.groupwire import member, next_msg
from tests.wire import Wire

FAST = 0.05


async def series_until(http: Http, done: Any, timeout: float = 10.0) -> Any:
    """Poll the endpoint until ``done(body)``; the last body."""
    body: Any = None

    async def check() -> bool:
        nonlocal body
        body = await http.get_json("/api/series")
        return bool(done(body))

    deadline = timeout
    while not await check():
        deadline -= 0.02
        assert deadline > 0, f"series never got there: {body}"
        await asyncio.sleep(0.02)
    return body


def counted(body: Any, name: str) -> float:
    """Messages a rate series adds up to: the sum of rate x seconds between samples."""
    times, rates = body["times"], body["rates"][name]
    return sum((rates[i] or 0) * (times[i] - times[i - 1]) for i in range(1, len(times)))


async def test_rates_add_up_to_the_messages_published_delivered_and_acked(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(http_port=0, sample_interval=FAST, max_inflight=300)
    http = Http(broker)
    await series_until(http, lambda b: len(b["times"]) >= 2)  # traffic starts after a point
    consumer = await member(broker.port, "jobs", "workers")
    publisher = await Wire.open(broker.port)
    await publisher.send("".join(f"PUB jobs job-{i}\n" for i in range(200)))
    assert await publisher.lines(200) == ["OK published"] * 200
    deliveries = [await next_msg(consumer) for _ in range(200)]
    await consumer.send("".join(f"ACK {d.id}\n" for d in deliveries))
    assert await consumer.lines(200) == ["OK ack_received"] * 200
    acked = broker.router.groups["jobs"]["workers"].state.acked_count
    assert acked == 200

    def settled(body: Any) -> bool:
        rates = body["rates"]
        return any(rates["acked"]) and rates["acked"][-1] == 0 and rates["published"][-1] == 0

    body = await series_until(http, settled)
    assert body["interval"] == FAST and body["samples"] == 180
    assert set(body["rates"]) == set(RATES)
    assert all(len(ring) == len(body["times"]) for ring in body["rates"].values())
    for name in ("published", "delivered", "acked"):
        assert max(body["rates"][name]) > 0
        assert 180 <= counted(body, name) <= 220, (name, counted(body, name))
    assert not any(body["rates"]["dead_lettered"])


async def test_dead_letters_show_as_a_rate(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0, sample_interval=FAST, ack_timeout=0.05, max_retries=0)
    http = Http(broker)
    await series_until(http, lambda b: len(b["times"]) >= 2)
    await dead_letter(broker, "orders", "billing", "card declined")
    body = await series_until(http, lambda b: any(b["rates"]["dead_lettered"]))
    assert 0.8 <= counted(body, "dead_lettered") <= 1.2


async def test_group_lag_follows_what_the_group_has_not_finished(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0, sample_interval=FAST, max_inflight=1)
    http = Http(broker)
    consumer = await member(broker.port, "jobs", "workers")
    publisher = await Wire.open(broker.port)
    for i in range(5):
        assert await publisher.cmd(f"PUB jobs job-{i}") == "OK published"
    held = await next_msg(consumer)

    def lag_of(body: Any) -> list[int | None]:
        found = [s["values"] for s in body["lag"] if s["group"] == "workers"]
        return found[0] if found else []

    body = await series_until(http, lambda b: lag_of(b)[-1:] == [5])
    assert len(lag_of(body)) == len(body["times"])
    assert await consumer.cmd(f"ACK {held.id}") == "OK ack_received"
    await series_until(http, lambda b: lag_of(b)[-1:] == [4])


async def test_a_group_created_later_has_no_values_before_it_existed(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(http_port=0)
    series = Series(broker.face, interval=1.0, samples=4)
    series.sample()  # the counters rates start from: no point yet
    assert series.to_json()["times"] == []
    series.sample()
    series.sample()
    await member(broker.port, "jobs", "late")
    series.sample()
    body = series.to_json()
    assert body["lag"] == [{"topic": "jobs", "group": "late", "values": [None, None, 0]}]
    for _ in range(5):
        series.sample()
    body = series.to_json()
    assert len(body["times"]) == 4  # a ring: the oldest points go
    assert body["lag"][0]["values"] == [0, 0, 0, 0]
    assert all(len(ring) == 4 for ring in body["rates"].values())


async def test_series_with_auth_needs_a_token_and_shows_only_readable_groups(
    brokers: BrokerFactory, tmp_path: Path
) -> None:
    users = tmp_path / "users.toml"
    users.write_text(
        f'[[users]]\nname = "a"\ntoken_sha256 = "{hash_token("tok-a")}"\n'
        'publish = [">"]\nsubscribe = ["a.>"]\n'
        f'[[users]]\nname = "all"\ntoken_sha256 = "{hash_token("tok-all")}"\n'
        'publish = [">"]\nsubscribe = [">"]\n'
    )
    broker = await brokers.start(http_port=0, auth_file=users, sample_interval=FAST)
    for topic in ("a.one", "b.two"):
        w = await wire(broker, "tok-all")
        assert await w.cmd(f"SUB {topic} g") == f"OK subscribed {topic} in group g"

    assert (await Http(broker).get("/api/series"))[0] == 401
    assert (await Http(broker, "wrong").get("/api/series"))[0] == 401
    everything = await series_until(Http(broker, "tok-all"), lambda b: len(b["lag"]) == 2)
    assert [s["topic"] for s in everything["lag"]] == ["a.one", "b.two"]
    mine = await Http(broker, "tok-a").get_json("/api/series")
    assert [s["topic"] for s in mine["lag"]] == ["a.one"]
    assert set(mine["rates"]) == set(RATES)


async def test_the_sampler_stops_with_the_broker(brokers: BrokerFactory) -> None:
    broker = await brokers.start(http_port=0, sample_interval=FAST)
    await series_until(Http(broker), lambda b: len(b["times"]) >= 1)
    await brokers.stop(broker)
    running = [t for t in asyncio.all_tasks() if "Series.run" in repr(t.get_coro())]
    assert running == []
