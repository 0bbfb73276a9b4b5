"""Random bytes flipped in the group journals of a real broker's data dir: it always starts,
and every message a group had not acked reaches it again."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linemq.broker.config import Config
from linemq.broker.server.app import Broker
from tests.conftest import FAST
from tests.server.groupwire import member, parse_msg
from tests.wire import Wire

GROUPS = ("g1", "g2", "g3")
MESSAGES = 30


@dataclasses.dataclass
class Template:
    data_dir: Path
    acked: dict[str, set[str]]  # group -> texts whose ACK got its OK
    texts: set[str]


async def start(data_dir: Path) -> Broker:
    options = {**FAST, "ack_timeout": 60.0, "max_inflight": 100}  # all in flight at once
    broker = Broker(Config(port=0, data_dir=data_dir, **options))
    await broker.start()
    return broker


async def build(data_dir: Path) -> Template:
    """Three groups: one acks most, one acks some and is compacted, one acks none."""
    broker = await start(data_dir)
    rng = random.Random(7)
    members = {g: await member(broker.port, "t", g) for g in GROUPS}
    p = await Wire.open(broker.port)
    texts = {f"m{i}" for i in range(MESSAGES)}
    for i in range(MESSAGES):
        assert await p.cmd(f"PUB t m{i}") == "OK published"
    acked: dict[str, set[str]] = {g: set() for g in GROUPS}
    share = {"g1": 0.8, "g2": 0.4, "g3": 0.0}
    for g, w in members.items():
        got = [parse_msg(await w.line(5)) for _ in range(MESSAGES)]  # all in flight at once
        chosen = [d for d in got if rng.random() < share[g]]
        await w.send("".join(f"ACK {d.id}\n" for d in chosen))
        assert await w.lines(len(chosen)) == ["OK ack_received"] * len(chosen)
        acked[g] = {d.text for d in chosen}
        if g == "g2":
            await broker.router.groups["t"]["g2"].state.compact()
    for w in [p, *members.values()]:  # the unacked go back to their groups, retried soon
        await w.close()
    await asyncio.sleep(0.05)
    await broker.stop()
    return Template(data_dir, acked, texts)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return asyncio.run(build(tmp_path_factory.mktemp("template") / "data"))


async def receive_all(port: int, group: str) -> set[str]:
    """Everything the group delivers, acking as it goes, until it falls silent."""
    w = await member(port, "t", group)
    got: set[str] = set()
    while True:
        try:
            line = await w.line(1.0)
        except TimeoutError:
            break
        if line.startswith("MSG "):
            d = parse_msg(line)
            got.add(d.text)
            await w.send(f"ACK {d.id}\n")
    await w.close()
    return got


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(
        st.tuples(st.sampled_from(GROUPS), st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
        min_size=1,
        max_size=6,
    )
)
def test_flipped_bytes_in_group_journals_lose_no_unacked_message(
    template: Template,
    tmp_path_factory: pytest.TempPathFactory,
    flips: list[tuple[str, float, int]],
) -> None:
    data_dir = tmp_path_factory.mktemp("damaged") / "data"
    shutil.copytree(template.data_dir, data_dir)
    for group, where, xor in flips:
        path = data_dir / "groups" / "t" / f"{group}.journal"
        data = bytearray(path.read_bytes())
        data[int(where * len(data))] ^= xor
        path.write_bytes(bytes(data))

    async def check() -> None:
        broker = await start(data_dir)  # always starts
        try:
            received = await asyncio.gather(*(receive_all(broker.port, g) for g in GROUPS))
            for group, got in zip(GROUPS, received, strict=True):
                lost = template.texts - template.acked[group] - got
                assert not lost, (group, sorted(lost))
        finally:
            await broker.stop()

    asyncio.run(check())
