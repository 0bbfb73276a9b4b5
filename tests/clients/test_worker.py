"""``client.process`` / ``client.worker``: handlers settle messages, and stopping drains."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from linemq.clients import Client, ExponentialBackoff, Message, RetryLater, Terminate, Worker
from linemq.clients.worker import MAX_REASON_SENT, HandlerTimeout, Outcome, outcome
from tests.clients.test_reconnect import FAST_RETRY
from tests.conftest import BrokerFactory, eventually


def test_what_a_handler_does_decides_what_the_broker_is_told() -> None:
    assert outcome(None, 1) == Outcome("ack")
    assert outcome(Terminate("cannot parse"), 1) == Outcome("term", reason="cannot parse")
    assert outcome(Terminate(), 3) == Outcome("term")
    assert outcome(RetryLater("5s", "rate limited"), 1) == Outcome("nack", 5.0, "rate limited")
    assert outcome(ValueError("bad\ninput"), 1) == Outcome("nack", None, "ValueError: bad input")
    assert outcome(KeyError(), None) == Outcome("nack", None, "KeyError")
    backoff = ExponentialBackoff(base=1, cap=8, jitter=False)
    delays = [outcome(OSError("x"), attempt, backoff).delay for attempt in (1, 2, 3, 4, 5)]
    assert delays == [1, 2, 4, 8, 8]
    long = outcome(RuntimeError("é" * 5000), 1).reason
    assert long is not None and len(long.encode()) <= MAX_REASON_SENT


async def dead_letters(c: Client, topic: str) -> dict[str, tuple[str, str | None]]:
    return {d.text: (d.reason, d.error) for d in await c.dlq(topic)}


async def test_return_acks_an_exception_nacks_with_its_text_and_terminate_dead_letters(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_retries=0, ack_timeout=10)
    seen: list[str] = []

    async def handler(m: Message) -> None:
        seen.append(m.text)
        if m.text == "bad":
            raise ValueError("bad input on line 3")
        if m.text == "poison":
            raise Terminate("cannot parse: not JSON")

    async with Client(port=broker.port) as c:
        async with c.worker("jobs", "w", handler, concurrency=3) as w:
            for text in ("ok", "bad", "poison"):
                await c.publish("jobs", text)
            await eventually(lambda: w.stats.acked + w.stats.nacked + w.stats.terminated == 3)
        assert sorted(seen) == ["bad", "ok", "poison"]
        assert (w.stats.acked, w.stats.nacked, w.stats.terminated) == (1, 1, 1)
        assert await dead_letters(c, "jobs") == {
            "bad": ("nacked", "ValueError: bad input on line 3"),
            "poison": ("terminated", "cannot parse: not JSON"),
        }
        [info] = await c.groups("jobs")
        assert (info.acked, info.inflight, info.members) == (1, 0, 0)


async def test_a_failed_message_is_retried_with_the_workers_backoff(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_retries=3, ack_timeout=10)
    attempts: list[tuple[int | None, float]] = []
    loop = asyncio.get_running_loop()

    async def flaky(m: Message) -> None:
        attempts.append((m.attempt, loop.time()))
        if m.attempt is not None and m.attempt < 3:
            raise ConnectionError("upstream down")

    backoff = ExponentialBackoff(base=0.1, cap=1, jitter=False)
    async with (
        Client(port=broker.port) as c,
        c.worker("jobs", "w", flaky, retry_backoff=backoff) as w,
    ):
        await c.publish("jobs", "charge card")
        await eventually(lambda: w.stats.acked == 1)
    assert [a for a, _ in attempts] == [1, 2, 3]
    waits = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
    assert waits[0] >= 0.1 and waits[1] >= 0.2, waits


async def test_retry_later_nacks_with_its_delay(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=10)
    times: list[float] = []
    loop = asyncio.get_running_loop()

    async def handler(m: Message) -> None:
        times.append(loop.time())
        if len(times) == 1:
            raise RetryLater("300ms", "rate limited")

    async with Client(port=broker.port) as c, c.worker("jobs", "w", handler) as w:
        await c.publish("jobs", "call the API")
        await eventually(lambda: w.stats.acked == 1)
    assert times[1] - times[0] >= 0.3


async def test_concurrency_bounds_the_handlers_running_at_once(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_inflight=10, ack_timeout=10)
    running = peak = 0

    async def handler(m: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    async with Client(port=broker.port) as c, c.worker("jobs", "w", handler, concurrency=3) as w:
        await c.publish_many("jobs", [f"job {i}" for i in range(12)])
        await eventually(lambda: w.stats.acked == 12)
    assert peak == 3


async def test_long_jobs_are_touched_so_the_broker_does_not_take_them_back(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=0.2, max_inflight=2)
    calls: list[tuple[str, int | None]] = []

    async def slow(m: Message) -> None:
        calls.append((m.text, m.attempt))
        await asyncio.sleep(0.5)  # well past the 0.2 s ack timeout

    async with Client(port=broker.port) as c:
        # Concurrency 1: the second message waits in the worker, and is touched too.
        async with c.worker("jobs", "w", slow) as w:
            await c.publish_many("jobs", ["first", "second"])
            await eventually(lambda: w.stats.acked == 2, timeout=10)
        assert calls == [("first", 1), ("second", 1)], "each ran once: none was taken back"
        assert w.stats.lost == 0


async def test_without_auto_extend_a_long_job_is_taken_back(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=0.2)
    calls: list[int | None] = []

    async def slow(m: Message) -> None:
        calls.append(m.attempt)
        if m.attempt == 1:
            await asyncio.sleep(0.6)

    async with (
        Client(port=broker.port) as c,
        c.worker("jobs", "w", slow, auto_extend=False, concurrency=2) as w,
    ):
        await c.publish("jobs", "slow")
        await eventually(lambda: w.stats.acked == 1 and w.stats.lost == 1)
    assert calls == [1, 2]


async def test_timeout_cancels_the_handler_and_nacks_the_message(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_retries=0, ack_timeout=10)
    cancelled = asyncio.Event()

    async def hangs(m: Message) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with Client(port=broker.port) as c:
        async with c.worker("jobs", "w", hangs, timeout="100ms") as w:
            await c.publish("jobs", "stuck")
            await eventually(lambda: w.stats.nacked == 1)
        assert cancelled.is_set() and w.stats.timed_out == 1
        assert await dead_letters(c, "jobs") == {
            "stuck": ("nacked", f"{HandlerTimeout.__name__}: handler timed out after 0.1 s")
        }


async def test_stop_lets_running_handlers_finish_and_gives_back_the_rest_uncounted(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=5, ack_timeout=10)
    started, release = asyncio.Event(), asyncio.Event()
    handled: list[str] = []

    async def handler(m: Message) -> None:
        started.set()
        await release.wait()
        handled.append(m.text)

    async with Client(port=broker.port) as c:
        await c.publish_many("jobs", ["a", "b", "c"])
        w = c.worker("jobs", "w", handler, start="earliest")
        running = asyncio.create_task(w.run())
        await started.wait()
        w.stop()
        await asyncio.sleep(0.05)
        assert not running.done(), "the running handler is waited for"
        release.set()
        await asyncio.wait_for(running, 5)
        assert w.stats.acked == 1 and handled == ["a"]

    async with Client(port=broker.port) as c2:
        rest = await c2.subscribe("jobs", "w")
        again = [await asyncio.wait_for(rest.next(), 5) for _ in range(2)]
        assert sorted(m.text for m in again) == ["b", "c"]
        assert [m.attempt for m in again] == [1, 1], "never handled: no attempt counted"


async def test_handlers_past_the_grace_are_cut_short_and_given_back(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=10)
    started = asyncio.Event()

    async def forever(m: Message) -> None:
        started.set()
        await asyncio.sleep(30)

    async with Client(port=broker.port) as c:
        async with c.worker("jobs", "w", forever, grace=0.1) as w:
            await c.publish("jobs", "long")
            await started.wait()
        assert (w.stats.acked, w.stats.nacked, w.running) == (0, 0, 0)
        again = await c.subscribe("jobs", "w")
        m = await asyncio.wait_for(again.next(), 5)
        assert (m.text, m.attempt) == ("long", 1)


async def test_cancelling_process_drains_then_raises_cancelled(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=10)
    started = asyncio.Event()

    async def handler(m: Message) -> None:
        started.set()
        await asyncio.sleep(0.2)

    async with Client(port=broker.port) as c:
        task = asyncio.create_task(c.process("jobs", "w", handler))
        await eventually(lambda: broker.router.groups.get("jobs") is not None)
        await c.publish("jobs", "finish me")
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [info] = await c.groups("jobs")
        assert (info.acked, info.inflight, info.members) == (1, 0, 0)


async def test_a_second_stop_cuts_the_grace_short(brokers: BrokerFactory) -> None:
    broker = await brokers.start(ack_timeout=10)
    started = asyncio.Event()

    async def forever(m: Message) -> None:
        started.set()
        await asyncio.sleep(30)

    async with Client(port=broker.port) as c:
        w = c.worker("jobs", "w", forever, grace=30)
        running = asyncio.create_task(w.run())
        await eventually(lambda: broker.router.groups.get("jobs") is not None)
        await c.publish("jobs", "long")
        await started.wait()
        w.stop()
        w.stop()
        await asyncio.wait_for(running, 2)


async def test_the_worker_acks_in_the_brokers_grace_and_carries_on_after_its_restart(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(shutdown_grace=5, ack_timeout=10)
    port = broker.port
    handled: list[tuple[str, int | None]] = []
    release = asyncio.Event()

    async def handler(m: Message) -> None:
        handled.append((m.text, m.attempt))
        if m.text == "in flight at SIGTERM":
            await release.wait()

    async with Client(port=port, reconnect=FAST_RETRY) as c:
        w: Worker = c.worker("jobs", "w", handler)
        async with w:
            await c.publish("jobs", "in flight at SIGTERM")
            await eventually(lambda: bool(handled))
            stopping = asyncio.create_task(brokers.stop(broker))
            await eventually(lambda: c.server_closing is not None)
            release.set()  # the job ends in the broker's grace: its ack is kept
            await asyncio.wait_for(stopping, 5)
            await eventually(lambda: w.stats.acked == 1)  # its OK came before the close

            await brokers.start(port=port, ack_timeout=10)
            async with Client(port=port) as pub:
                await pub.publish("jobs", "after the restart")
            await eventually(lambda: w.stats.acked == 2)
        assert handled == [("in flight at SIGTERM", 1), ("after the restart", 1)]
        assert w.stats.lost == 0


async def test_deliveries_of_a_lost_connection_are_dropped_and_redelivered_ones_handled(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(ack_timeout=10, max_inflight=3)  # no grace: cut at once
    port = broker.port
    handled: list[tuple[str, int | None]] = []
    release = asyncio.Event()

    async def handler(m: Message) -> None:
        handled.append((m.text, m.attempt))
        if (m.text, m.attempt) == ("a", 1):
            await release.wait()

    async with Client(port=port, reconnect=FAST_RETRY) as c, c.worker("jobs", "w", handler) as w:
        await c.publish_many("jobs", ["a", "b", "c"])
        await eventually(lambda: bool(handled))  # "a" runs; "b" and "c" wait in the worker
        await brokers.stop(broker)
        await brokers.start(port=port, ack_timeout=10, max_inflight=3)
        await eventually(lambda: c.reconnects == 1)
        release.set()  # the first run of "a" ends: its ack finds nothing to ack
        await eventually(lambda: w.stats.acked == 3 and w.stats.lost == 1)
    assert handled[0] == ("a", 1)
    assert sorted(handled[1:]) == [("a", 2), ("b", 2), ("c", 2)], "b and c ran once, redelivered"


async def test_concurrency_above_the_brokers_max_inflight_is_warned_about(
    brokers: BrokerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    broker = await brokers.start(max_inflight=2)

    async def handler(m: Message) -> None:
        pass

    async with Client(port=broker.port) as c, c.worker("jobs", "w", handler, concurrency=5):
        pass
    assert "concurrency 5 is more than the broker's max_inflight 2 per connection" in caplog.text
