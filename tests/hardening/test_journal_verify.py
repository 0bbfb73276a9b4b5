"""``verify_journals`` and ``repair_journals``: what ``linemq verify [--repair]`` calls."""

from __future__ import annotations

from pathlib import Path

from linemq.broker.journal_verify import repair_journals, verify_journals
from linemq.broker.storage.damage import JOURNAL_LINE, UNOPENABLE
from tests.conftest import BrokerFactory
from tests.server.groupwire import member, next_msg
from tests.wire import Wire


async def data_dir_with_groups(brokers: BrokerFactory) -> Path:
    """Groups with acked and unacked messages, a pattern group, a replayed dead letter."""
    broker = await brokers.start(max_retries=0)
    p = await Wire.open(broker.port)
    dead = await member(broker.port, "d", "g")
    assert await p.cmd("PUB d poison") == "OK published"
    assert await dead.cmd(f"NACK {(await next_msg(dead)).id}") == "OK nack_received"
    for _ in range(100):
        if await p.cmd("REPLAY d ALL") == "OK replayed 1":
            break
    await dead.close()
    await p.close()
    await brokers.stop(broker)

    broker = await brokers.start()
    m = await member(broker.port, "t", "g")
    p = await Wire.open(broker.port)
    assert await p.cmd("SUB jobs.* billing") == "OK subscribed jobs.* in group billing"
    for i in range(6):
        assert await p.cmd(f"PUB t m{i}") == "OK published"
    got = [await next_msg(m) for _ in range(5)]  # --max-inflight 5
    await m.send("".join(f"ACK {d.id}\n" for d in got[:3]))  # m3..m5 left unacked
    lines = await m.lines(4)
    assert lines.count("OK ack_received") == 3 and any(x.endswith(" m5") for x in lines)
    await m.close()
    await p.close()
    await brokers.stop(broker)
    return brokers.data_dir


async def test_a_clean_data_dir_verifies_clean_and_repair_does_nothing(
    brokers: BrokerFactory,
) -> None:
    data = await data_dir_with_groups(brokers)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    assert verify_journals(data) == []
    assert repair_journals(data) == []
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


async def test_verify_finds_every_damaged_line_and_changes_nothing(
    brokers: BrokerFactory,
) -> None:
    data = await data_dir_with_groups(brokers)
    group = data / "groups" / "t" / "g.journal"
    lines = group.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"o"', b'"p"')  # the floor line
    lines[4] = b"\x00" * (len(lines[4]) - 1) + b"\n"
    group.write_bytes(b"".join(lines) + b'{"e":"a","o')  # and a torn tail
    patterns = data / "groups" / ".patterns.journal"
    patterns.write_bytes(patterns.read_bytes().replace(b"billing", b"billinf"))
    (data / "dedup").mkdir(exist_ok=True)
    (data / "dedup" / "bad..name").write_bytes(b"")
    (data / "replays" / "x.journal").mkdir()
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}

    found = verify_journals(data)
    described = [(d.kind, Path(d.path).name, d.position, d.topic, d.group) for d in found]
    offset_2 = len(lines[0]) + len(lines[1])
    offset_4 = offset_2 + len(lines[2]) + len(lines[3])
    end = sum(len(line) for line in lines)
    assert described == [
        (
            JOURNAL_LINE,
            ".patterns.journal",
            len(patterns.read_bytes().split(b"\n")[0]) + 1,
            None,
            None,
        ),
        (JOURNAL_LINE, "g.journal", offset_2, "t", "g"),
        (JOURNAL_LINE, "g.journal", offset_4, "t", "g"),
        (JOURNAL_LINE, "g.journal", end, "t", "g"),
        (UNOPENABLE, "x.journal", -1, "x", None),
        (UNOPENABLE, "bad..name", -1, None, None),
    ]
    assert found[3].reason == "torn last line (11 bytes)"
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before


async def test_repair_does_what_the_broker_would_and_says_so(brokers: BrokerFactory) -> None:
    data = await data_dir_with_groups(brokers)
    group = data / "groups" / "t" / "g.journal"
    lines = group.read_bytes().splitlines(keepends=True)
    (acks,) = [i for i, line in enumerate(lines) if line.startswith(b'{"e":"a"')]
    assert acks < len(lines) - 1  # a line in the middle (bad lines at the end are a torn tail)
    lines[acks] = lines[acks][:5] + b"#" + lines[acks][6:]  # the acks of m0..m2
    group.write_bytes(b"".join(lines))
    (data / "groups" / "t" / ".g.journal.tmp").write_bytes(b"half a snapshot")
    done = repair_journals(data)
    assert len(done) == 2
    assert done[0].endswith(".g.journal.tmp: removed (a snapshot a crash left unfinished)")
    assert "g.journal: 1 damaged line(s) dropped; the group goes on from offset 7" in done[1]
    assert "with 6 pending (delivered again)" in done[1]
    assert verify_journals(data) == []
    assert repair_journals(data) == []

    broker = await brokers.start()  # and the broker agrees: nothing left to report
    assert broker.damage.counts()["journal_line"] == 0
    m = await member(broker.port, "t", "g")
    got = sorted([(await next_msg(m)).text for _ in range(5)])  # --max-inflight 5
    assert got == ["m0", "m1", "m2", "m3", "m4"]  # the lost acks: delivered again
    await m.close()


async def test_repair_migrates_a_data_dir_of_the_earlier_release(brokers: BrokerFactory) -> None:
    data = brokers.data_dir
    (data / "groups" / "t").mkdir(parents=True)
    (data / "groups" / "_patterns.journal").write_bytes(b'{"p":"jobs.*","g":"billing"}\n')
    (data / "groups" / "t" / "g.journal").write_bytes(
        b'{"e":"start","o":1}\n{"e":"t","o":1,"n":2}\n{"e":"a","o":1}\n'
    )
    assert verify_journals(data) == []  # format 1 is not damage
    done = repair_journals(data)
    assert [line.rsplit("/", 1)[-1] for line in done] == [
        "_patterns.journal: moved to .patterns.journal",
        ".patterns.journal: rewritten in format 2",
        "g.journal: rewritten in format 2",
    ]
    assert (data / "groups" / "t" / "g.journal").read_bytes().startswith(b'{"journal":2,"c":')
