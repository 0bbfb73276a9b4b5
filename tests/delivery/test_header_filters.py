"""``SUB <topic> <group> filter=h.<name>=<value>``: a group gets only the messages whose
headers match; the rest are passed over (acked for it, counted as ``filtered``), durably,
over real sockets."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from linemq.broker.delivery.group_events import deliver_line, take_line
from tests.conftest import BrokerFactory, BrokerProcess, eventually
from tests.ops.http import Http
from tests.server.groupwire import next_msg
from tests.wire import Wire


async def put(port: int, *messages: tuple[str, str]) -> None:
    """PUT each (text, options) to topic q; plain PUB for options ``"-"``."""
    pub = await Wire.open(port)
    for text, options in messages:
        if options == "-":
            await pub.send(f"PUB q {text}\n")
        else:
            await pub.send(f"PUT q {len(text)} {options}\n{text}\n")
    for _ in messages:
        assert (await pub.line()).startswith("OK published")
    await pub.close()


async def fields(port: int, command: str, prefix: str) -> dict[str, str]:
    w = await Wire.open(port)
    await w.send(command + "\n")
    lines = await w.until("OK groups end" if command.startswith("GROUPS") else "OK stats end")
    await w.close()
    (line,) = [x for x in lines if x.startswith(prefix)]
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


async def test_a_group_gets_only_matching_messages_and_counts_the_rest(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=10, http_port=0)
    m = await Wire.open(broker.port)
    assert await m.cmd("SUB q mail filter=h.type=email|sms") == "OK subscribed q in group mail"
    everyone = await Wire.open(broker.port)
    assert await everyone.cmd("SUB q all") == "OK subscribed q in group all"
    await put(
        broker.port,
        ("e1", "h.type=email"),
        ("p1", "h.type=push"),
        ("plain", "-"),
        ("s1", "h.type=sms h.lang=fr"),
        ("n1", "h.other=email"),
    )
    got = [await next_msg(m), await next_msg(m)]
    assert [(d.text, d.offset) for d in got] == [("e1", 1), ("s1", 4)]
    assert await m.silent(0.2)
    assert [(await next_msg(everyone)).text for _ in range(5)] == ["e1", "p1", "plain", "s1", "n1"]
    for d in got:
        assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    group = await fields(broker.port, "GROUPS q", "GROUP q mail ")
    assert group["filtered"] == "3"
    assert (group["acked"], group["lag"], group["inflight"], group["waiting"]) == (
        "2",
        "0",
        "0",
        "0",
    )
    assert "filtered" not in await fields(broker.port, "GROUPS q", "GROUP q all ")
    stat = await fields(broker.port, "STATS q", "STAT group q mail ")
    assert (stat["filtered"], stat["delivered"], stat["failures"]) == ("3", "2", "0")
    assert (await fields(broker.port, "STATS q", "STAT group q all "))["filtered"] == "0"
    _, text = await Http(broker).get("/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("linemq_group_filtered_total", (("group", "mail"), ("topic", "q")))] == 3


async def test_presence_absence_and_not_equal_tests_and_several_filters_and(
    brokers: BrokerFactory,
) -> None:
    broker = await brokers.start(max_inflight=10)
    subs = {
        "has": "filter=h.lang",
        "hasnt": "filter=!h.lang",
        "noten": "filter=h.lang!=en",
        "both": "filter=h.lang=fr filter=h.type=a%20b",
    }
    wires = {}
    for group, spec in subs.items():
        wires[group] = await Wire.open(broker.port)
        assert (
            await wires[group].cmd(f"SUB q {group} {spec}") == f"OK subscribed q in group {group}"
        )
    await put(
        broker.port,
        ("en", "h.lang=en"),
        ("fr", "h.lang=fr h.type=x"),
        ("plain", "-"),
        ("frab", "h.lang=fr h.type=a%20b"),
    )
    expect = {
        "has": ["en", "fr", "frab"],
        "hasnt": ["plain"],
        "noten": ["fr", "plain", "frab"],
        "both": ["frab"],
    }
    for group, texts in expect.items():
        assert [(await next_msg(wires[group])).text for _ in texts] == texts
        assert await wires[group].silent(0.05)


async def test_filtered_messages_stay_passed_over_after_a_restart(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_inflight=10)
    m = await Wire.open(broker.port)
    assert await m.cmd("SUB q g filter=h.type=email") == "OK subscribed q in group g"
    await put(broker.port, ("x1", "h.type=push"), ("e1", "h.type=email"), ("x2", "-"))
    d = await next_msg(m)
    assert d.text == "e1"
    assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    await m.close()
    broker = await brokers.restart(broker)
    assert (await fields(broker.port, "GROUPS q", "GROUP q g "))["filtered"] == "2"
    m = await Wire.open(broker.port)
    assert await m.cmd("SUB q g") == "OK subscribed q in group g"  # joins with its filter
    await put(broker.port, ("x3", "h.type=sms"), ("e2", "h.type=email"))
    assert (await next_msg(m)).text == "e2"
    assert await m.silent(0.1)
    group = await fields(broker.port, "GROUPS q", "GROUP q g ")
    assert (group["filtered"], group["acked"]) == ("3", "1")
    assert await m.cmd("SUB q g filter=h.type=sms") == "ERR group g on q has filter=h.type=email"


async def test_filter_and_its_counter_survive_kill9(
    broker_process: Callable[..., BrokerProcess],
) -> None:
    proc = broker_process("--max-inflight", "10")
    m = await Wire.open(proc.port)
    assert await m.cmd("SUB q g filter=h.type=email") == "OK subscribed q in group g"
    await put(proc.port, ("x1", "h.type=push"), ("e1", "h.type=email"), ("x2", "-"))
    d = await next_msg(m)
    assert d.text == "e1"
    assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    proc.kill9()
    proc = broker_process("--max-inflight", "10")
    m = await Wire.open(proc.port)
    assert await m.cmd("SUB q g") == "OK subscribed q in group g"
    await put(proc.port, ("x3", "-"), ("e2", "h.type=email"))
    again = await next_msg(m)
    assert (again.text, again.offset) == ("e2", 5)  # nothing before it comes back
    assert await m.silent(0.1)
    assert (await fields(proc.port, "GROUPS q", "GROUP q g "))["filtered"] == "3"
    assert await m.cmd("SUB q g filter=h.type=push") == "ERR group g on q has filter=h.type=email"


async def test_a_long_filtered_backlog_read_from_disk_is_passed_over(
    brokers: BrokerFactory,
) -> None:
    """Thousands of non-matching messages (past the look-ahead and the tail cache) cost
    the group no delivery; the one match after them still comes."""
    broker = await brokers.start(max_inflight=10)
    pub = await Wire.open(broker.port)
    n = 5000
    await pub.send("".join(f"PUB q junk {i}\n" for i in range(n)))
    assert await pub.lines(n) == ["OK published"] * n
    await put(broker.port, ("wanted", "h.type=email"))
    m = await Wire.open(broker.port)
    assert await m.cmd("SUB q g from=earliest filter=h.type=email") == "OK subscribed q in group g"
    d = await next_msg(m)
    assert (d.text, d.offset) == ("wanted", n + 1)
    assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    group = await fields(broker.port, "GROUPS q", "GROUP q g ")
    assert (group["filtered"], group["lag"]) == (str(n), "0")


async def test_fifo_group_with_a_filter_moves_past_a_filtered_run(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_inflight=10)
    m = await Wire.open(broker.port)
    cmd = "SUB q g ordering=fifo filter=h.type=email"
    assert await m.cmd(cmd) == "OK subscribed q in group g"
    await put(broker.port, *[(f"x{i}", "-") for i in range(700)], ("e1", "h.type=email"))
    await put(broker.port, ("e2", "h.type=email"))
    d = await next_msg(m)
    assert d.text == "e1"
    assert await m.silent(0.1)  # FIFO: one at a time
    assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    assert (await next_msg(m)).text == "e2"


async def test_status_shows_a_message_filtered_for_a_group(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    m = await Wire.open(broker.port)
    assert await m.cmd("SUB q mail filter=h.type=email") == "OK subscribed q in group mail"
    await m.cmd("UNSUB q mail")
    assert await m.cmd("SUB q all") == "OK subscribed q in group all"
    await put(broker.port, ("p1", "h.type=push"))
    d = await next_msg(m)
    ops = await Wire.open(broker.port)
    await ops.send("STATUS q 1\n")
    lines = await ops.until("OK status end")
    assert lines[1:] == [
        "STATUS q 1 all state=inflight attempt=1 member=" + lines[1].split("member=")[1],
        "STATUS q 1 mail state=filtered",
        "OK status end",
    ]
    m2 = await Wire.open(broker.port)
    assert await m2.cmd("SUB q mail") == "OK subscribed q in group mail"
    await eventually(lambda: broker.router.groups["q"]["mail"].state.filtered_count == 1)
    await ops.send("STATUS q 1\n")
    assert (await ops.until("OK status end"))[2] == "STATUS q 1 mail state=filtered"
    assert await m.cmd(f"ACK {d.id}") == "OK ack_received"


async def test_bad_filters_and_other_filters_get_clear_errors(brokers: BrokerFactory) -> None:
    broker = await brokers.start()
    w = await Wire.open(broker.port)
    syntax = "h.<name>=<value>[|<value>...], h.<name>!=<value>, h.<name> or !h.<name>"
    assert await w.cmd("SUB q g filter=type=email") == (
        f"ERR invalid filter: type=email ({syntax})"
    )
    assert await w.cmd("SUB q g filter=!h.type=email") == (
        f"ERR invalid filter: !h.type=email ({syntax})"
    )
    assert await w.cmd("SUB q g filter=h.type=%FF") == (
        "ERR invalid filter: h.type=%FF (values are percent-encoded UTF-8)"
    )
    assert await w.cmd("SUB q.* g filter=h.type=email") == (
        "ERR filter= is not supported for wildcard groups"
    )
    assert await w.cmd("SUB q filter=h.type=email") == "ERR invalid group name"
    assert await w.cmd("SUB q plain") == "OK subscribed q in group plain"
    assert await w.cmd("SUB q plain filter=h.type=email") == "ERR group plain on q has no filter"
    other = await Wire.open(broker.port)
    spec = "filter=h.type=sms|email filter=h.lang"
    assert await other.cmd(f"SUB q g {spec}") == "OK subscribed q in group g"
    # The same filter in another order and spelling joins; any other is refused.
    assert await w.cmd("SUB q g filter=h.lang filter=h.type=email|sms") == (
        "OK subscribed q in group g"
    )
    assert await w.cmd("SUB q g filter=h.type=email") == (
        "ERR group g on q has filter=h.lang filter=h.type=email|sms"
    )
    assert await w.cmd("PING") == "OK pong"
    assert "GROUP q plain members=1" in " ".join(await _groups(broker.port))


async def _groups(port: int) -> list[str]:
    w = await Wire.open(port)
    await w.send("GROUPS q\n")
    return await w.until("OK groups end")


async def test_a_take_whose_filtered_line_was_lost_is_filtered_again_at_restart(
    brokers: BrokerFactory,
) -> None:
    """The ``fl`` line is written with the ``t`` line that takes the records; if a crash
    kept only the ``t``, the messages it took and never delivered are tested again."""
    broker = await brokers.start(max_inflight=10)
    m = await Wire.open(broker.port)
    assert await m.cmd("SUB q g filter=h.type=email") == "OK subscribed q in group g"
    assert await m.cmd("UNSUB q g") == "OK unsubscribed q from group g"
    await put(
        broker.port,
        ("x1", "h.type=push"),
        ("e1", "h.type=email"),
        ("x2", "-"),
        ("e2", "h.type=email"),
    )
    await brokers.stop(broker)
    (journal,) = (broker.config.data_dir / "groups" / "q").glob("g.journal")
    with journal.open("ab") as f:  # taken 1-4, 4 delivered; the fl line for 1 and 3 lost
        f.write(take_line(1, 4) + deliver_line(4, 1, 1, b"1795450600.5"))
    broker = await brokers.start(max_inflight=10)
    m = await Wire.open(broker.port)
    assert await m.cmd("SUB q g") == "OK subscribed q in group g"
    got = sorted([(await next_msg(m)).text, (await next_msg(m)).text])
    assert got == ["e1", "e2"]
    assert await m.silent(0.1)
    assert (await fields(broker.port, "GROUPS q", "GROUP q g "))["filtered"] == "2"


async def test_seek_keeps_the_filter(brokers: BrokerFactory) -> None:
    broker = await brokers.start(max_inflight=10)
    m = await Wire.open(broker.port)
    assert await m.cmd("SUB q g filter=!h.skip") == "OK subscribed q in group g"
    await put(broker.port, ("a", "-"), ("b", "h.skip=1"))
    d = await next_msg(m)
    assert d.text == "a"
    assert await m.cmd(f"ACK {d.id}") == "OK ack_received"
    assert await m.cmd("SEEK q g earliest") == "OK seek q g 1"
    d = await next_msg(m)
    assert (d.text, d.offset) == ("a", 1)
    assert await m.silent(0.1)
    assert (await fields(broker.port, "GROUPS q", "GROUP q g "))["filtered"] == "2"
