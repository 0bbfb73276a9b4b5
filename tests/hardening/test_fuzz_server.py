"""Hypothesis against a live broker: random command streams, junk, random splits, many
connections, abrupt disconnects. Afterwards the broker must still answer, must never have
raised into the event loop or logged an error, and its state must match what it promised.

Each example runs its own in-process broker (own data dir, own event loop via
``asyncio.run``) so examples cannot leak state into each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
import struct
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from linemq.broker.config import Config
from linemq.broker.server.app import Broker
from tests.conftest import FAST
from tests.wire import group_figures

MAX_LINE = 4096
MAX_INFLIGHT = 3
TOPICS = ["t", "u", "t.dlq"]
READ_BACK = [*TOPICS, "u.dlq", "t.dlq.dlq"]  # dead letters land in the .dlq topics too
GROUPS = ["g", "h"]
PUB_MARK = "@@P@@"  # replaced at send time by a unique token, so every stored text is traceable
ID_MARK = "@@ID@@"  # replaced at send time by an id some connection received in a MSG line
MSG_ID = re.compile(rb"^MSG \S+ (msg_\S+) ", re.M)

settings.register_profile("fuzz", deadline=None, suppress_health_check=list(HealthCheck))

# -- strategies ----------------------------------------------------------------------

topic = st.sampled_from(TOPICS)
group = st.sampled_from(GROUPS)
bad_name = st.sampled_from([".x", "a..b", "x/y", "a" * 201, "ü", "t*", "é"])
word_case = st.sampled_from([str.upper, str.lower, str.title])
text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00@"), max_size=30
)
number = st.one_of(st.integers(-3, 300).map(str), st.sampled_from(["x", "1.5", "", "99999999"]))


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """one_of with weights (hypothesis picks branches of one_of evenly)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


def _cmd(case: Any, verb: str, *args: str) -> str:
    return " ".join([case(verb), *args])


pub = st.builds(lambda c, t, m: _cmd(c, "PUB", t, PUB_MARK + m), word_case, topic, text)
valid_line = weighted(
    (1, st.builds(_cmd, word_case, st.sampled_from(["PING", "HEARTBEAT"]))),
    (6, pub),
    (1, st.builds(lambda c, t: _cmd(c, "SUB", t), word_case, topic)),
    (3, st.builds(lambda c, t, g: _cmd(c, "SUB", t, g), word_case, topic, group)),
    (1, st.builds(lambda c, t, g: _cmd(c, "UNSUB", t, g), word_case, topic, group)),
    (1, st.builds(lambda c, t: _cmd(c, "UNSUB", t), word_case, topic)),
    (1, st.builds(lambda c, t, n: _cmd(c, "HISTORY", t, n), word_case, topic, number)),
    (4, st.builds(lambda c: _cmd(c, "ACK", ID_MARK), word_case)),
    (
        2,
        st.builds(
            lambda c, d: _cmd(c, "NACK", ID_MARK, *d), word_case, st.just([]) | st.just(["0"])
        ),
    ),
    (1, st.builds(lambda c: _cmd(c, "TOUCH", ID_MARK), word_case)),
    (1, st.builds(lambda c, t: _cmd(c, "GROUPS", t), word_case, topic)),
    (1, st.builds(lambda c, t, n: _cmd(c, "DLQ", t, n), word_case, topic, number)),
    (1, st.builds(lambda c, t: _cmd(c, "REPLAY", t, "ALL"), word_case, topic)),
    (1, st.builds(lambda c, t: _cmd(c, "REPLAY", t, ID_MARK), word_case, topic)),
    (1, st.just("QUIT")),
)
invalid_line = st.one_of(
    st.builds(lambda w, a: f"{w} {a}", st.sampled_from(["FOO", "PUBX", "GET", "ACKK"]), text),
    st.builds(lambda v, n: f"{v} {n} x", st.sampled_from(["SUB", "HISTORY", "GROUPS"]), bad_name),
    st.builds(lambda v: v, st.sampled_from(["PUB", "PUB t", "SUB", "ACK", "NACK a b c", "PING x"])),
    st.builds(lambda n: f"NACK msg_1_0 {n}", st.sampled_from(["-1", "nan", "inf", "1e99", "x"])),
    st.builds(lambda n: f"PUB {n} m", bad_name),
    st.sampled_from(["", " ", "\t", "   PING", "QUIT now"]),
)
line = st.builds(
    lambda body, indent, end: (indent + body).encode() + end,
    weighted((4, valid_line), (1, invalid_line)),
    st.sampled_from(["", "", " ", "\t"]),
    st.sampled_from([b"\n", b"\n", b"\r\n"]),
)
junk = st.one_of(
    st.binary(max_size=48),
    st.builds(  # around the limit: fits, is exactly at it, or must be refused
        lambda n: f"PUB t {PUB_MARK}".encode() + b"x" * n + b"\n",
        st.integers(MAX_LINE - 40, MAX_LINE + 4) | st.integers(MAX_LINE, MAX_LINE * 3),
    ),
    st.builds(lambda n: b"y" * n, st.integers(MAX_LINE - 2, MAX_LINE * 2)),
    st.sampled_from([b"\xff\xfe\n", b"PING\x00\n", b"\x00\n", b"\r\r\n", b"\n\n\n", b"PI"]),
)
chunk = st.lists(weighted((8, line), (1, junk)), min_size=1, max_size=8)


@dataclass(frozen=True)
class Send:
    conn: int
    data: list[bytes]
    splits: list[int]


@dataclass(frozen=True)
class Drop:
    conn: int
    how: str  # abort (RST), close, half (write_eof: the broker must still answer)


action = weighted(
    (6, st.builds(Send, st.integers(0, 3), chunk, st.lists(st.integers(1, 64), max_size=6))),
    (1, st.builds(Drop, st.integers(0, 3), st.sampled_from(["abort", "close", "half"]))),
)

# -- the client side -----------------------------------------------------------------


@dataclass
class Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    received: bytearray = field(default_factory=bytearray)
    pubs: list[tuple[str, str]] = field(default_factory=list)  # (topic, msg) as sent
    task: asyncio.Task[None] | None = None

    async def pump(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await self.reader.read(65536):
                self.received += data

    @property
    def published_oks(self) -> int:
        return bytes(self.received).split(b"\n").count(b"OK published")


@dataclass
class Run:
    port: int
    clients: dict[int, Client] = field(default_factory=dict)
    closed: list[Client] = field(default_factory=list)
    serial: int = 0

    async def client(self, n: int) -> Client:
        c = self.clients.get(n)
        if c is None or c.writer.is_closing():
            if c is not None:  # the broker closed it (QUIT): keep what it sent and got
                self.closed.append(c)
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            c = self.clients[n] = Client(reader, writer)
            c.task = asyncio.create_task(c.pump())
        return c

    def seen_ids(self) -> list[str]:
        everyone = [*self.clients.values(), *self.closed]
        return [m.decode() for c in everyone for m in MSG_ID.findall(bytes(c.received))]

    def fill(self, c: Client, raw: bytes, n: int) -> bytes:
        ids = self.seen_ids()
        while PUB_MARK.encode() in raw:
            self.serial += 1
            raw = raw.replace(PUB_MARK.encode(), f"p{n}-{self.serial}-".encode(), 1)
        while ID_MARK.encode() in raw:
            pick = ids[self.serial % len(ids)] if ids else "msg_0_00000000"
            self.serial += 1
            raw = raw.replace(ID_MARK.encode(), pick.encode(), 1)
        for found in re.finditer(rb"^[ \t]*pub (\S+) (p\d+-\d+-.*?)\r?$", raw, re.M | re.I):
            c.pubs.append((found[1].decode(), found[2].decode()))
        return raw

    async def send(self, a: Send) -> None:
        c = await self.client(a.conn)
        data = b"".join(self.fill(c, piece, a.conn) for piece in a.data)
        cuts = sorted({s % (len(data) + 1) for s in a.splits} | {0, len(data)})
        with contextlib.suppress(ConnectionError, OSError):
            for lo, hi in itertools.pairwise(cuts):
                c.writer.write(data[lo:hi])
                await c.writer.drain()
                await asyncio.sleep(0)
        await asyncio.sleep(0.003)  # let replies and MSG lines (ids to ACK) come back

    async def drop(self, a: Drop) -> None:
        c = self.clients.pop(a.conn, None)
        if c is None:
            return
        self.closed.append(c)
        if a.how == "abort":
            with contextlib.suppress(OSError):  # the broker may have closed it already
                sock = c.writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.writer.transport.abort()
        elif a.how == "half":
            with contextlib.suppress(ConnectionError, OSError):
                c.writer.write_eof()
            return  # keep reading: the broker answers what was queued, then closes
        else:
            c.writer.close()
        if c.task is not None:
            c.task.cancel()


async def request(port: int, line: str, end: bytes) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    try:
        assert await reader.readline() == b"OK connected\n"
        writer.write(line.encode() + b"\n")
        out = []
        while (raw := await asyncio.wait_for(reader.readline(), 5)) != end:
            assert raw.endswith(b"\n"), f"{line}: connection closed after {out}"
            out.append(raw[:-1].decode())
        return out
    finally:
        writer.close()


# -- the checks ----------------------------------------------------------------------


async def read_back(port: int) -> dict[str, list[tuple[str, int, str]]]:
    stored = {}
    for t in READ_BACK:
        lines = await request(port, f"HISTORY {t} 1000", b"OK history end\n")
        rows = [ln.split(" ", 5) for ln in lines]
        assert [int(r[3]) for r in rows] == list(range(1, len(rows) + 1)), f"offsets of {t}"
        stored[t] = [(r[2], int(r[3]), r[5]) for r in rows]
    return stored


def _letter_text(text: str) -> str:
    with contextlib.suppress(ValueError):
        letter = json.loads(text)
        if isinstance(letter, dict) and isinstance(letter.get("msg"), str):
            return letter["msg"]
    return text


async def check_state(run: Run, everyone: list[Client]) -> None:
    assert await request(run.port, "PING", b"OK pong\n") == []
    stored = await read_back(run.port)
    sent = {(t, m) for c in everyone for t, m in c.pubs}
    # A replay republishes a letter's "msg"; a hand-published .dlq record is its own letter.
    replayable = {
        (t.removesuffix(".dlq"), _letter_text(m))
        for t, records in stored.items()
        if t.endswith(".dlq")
        for _, _, m in records
    }
    for t, records in stored.items():
        for _, offset, msg in records:
            dead = t.endswith(".dlq") and msg.startswith('{"topic"')
            ok = (t, msg) in sent or (t, msg) in replayable or dead
            same = [x for x in sent if x[1].split("-")[:2] == msg.split("-")[:2]]
            assert ok, f"{t} {offset} holds a text never published: {msg[:100]!r} {same}"
    for c in everyone:
        held = {(t, m) for t, records in stored.items() for _, _, m in records} & set(c.pubs)
        assert c.published_oks <= len(held), f"more OK published than records: {c.pubs}"
        for t in TOPICS:  # one connection's publishes are stored in the order it sent them
            order = [m for tt, m in c.pubs if tt == t and (t, m) in held]
            first = list(dict.fromkeys(m for _, _, m in stored[t] if (t, m) in held))
            assert first == list(dict.fromkeys(order)), f"publishes to {t} stored out of order"
    await check_groups(run.port, stored, all_gone=False)


async def check_groups(
    port: int, stored: dict[str, list[tuple[str, int, str]]], *, all_gone: bool
) -> None:
    """Counters are consistent; once every client is gone, nothing is in flight."""
    for _ in range(100):
        settled = True
        for t in READ_BACK:
            for ln in await request(port, f"GROUPS {t}", b"OK groups end\n"):
                pairs = (p.split("=", 1) for p in group_figures(ln).split(" ")[3:])
                f = {k: int(v) for k, v in pairs}
                assert min(f.values()) >= 0, ln
                assert f["inflight"] <= f["members"] * MAX_INFLIGHT, ln
                assert f["next_offset"] <= len(stored[t]) + 1, ln
                undelivered = len(stored[t]) + 1 - f["next_offset"]
                # waiting holds both redeliveries (below next_offset) and messages taken
                # ahead of delivery (at or above it, so already in ``undelivered``)
                assert undelivered + f["inflight"] <= f["lag"], ln
                assert f["lag"] <= undelivered + f["inflight"] + f["waiting"], ln
                assert f["acked"] + f["dead"] + f["lag"] <= len(stored[t]), ln
                settled = settled and not (all_gone and (f["members"] or f["inflight"]))
        if settled:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("members or in-flight messages left after every client closed")


def run_live(body: Callable[[int], Awaitable[None]]) -> list[str]:
    """Run ``body(port)`` against a fresh broker in a fresh loop and data dir.

    Returns what went wrong inside the broker: exceptions that reached the event
    loop's handler, and error-level or exception log events.
    """

    async def main(data_dir: Path) -> list[str]:
        loop = asyncio.get_running_loop()
        loop_errors: list[str] = []
        loop.set_exception_handler(lambda _, ctx: loop_errors.append(str(ctx)))
        options = {**FAST, "max_line_bytes": MAX_LINE, "max_inflight": MAX_INFLIGHT}
        broker = Broker(Config(port=0, data_dir=data_dir, max_retries=1, **options))
        with structlog.testing.capture_logs() as logs:
            await broker.start()
            try:
                await asyncio.wait_for(body(broker.port), 20)
            finally:
                await broker.stop()
        assert any(e["event"] == "listening" for e in logs), "log capture is not working"
        bad = [e for e in logs if e["log_level"] in ("error", "critical") or "exc_info" in e]
        return loop_errors + [repr(e) for e in bad]

    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(main(Path(tmp) / "data"))


async def scenario(port: int, actions: list[Send | Drop]) -> None:
    run = Run(port)
    for a in actions:
        await (run.send(a) if isinstance(a, Send) else run.drop(a))
    await asyncio.sleep(0.02)
    everyone = [*run.clients.values(), *run.closed]
    await check_state(run, everyone)
    replies = b"".join(c.received for c in everyone)
    for kind in (b"OK published", b"MSG ", b"OK ack_received", b"ERR line too long"):
        event(f"{kind.decode()} seen: {replies.count(kind) > 0}")
    for n in list(run.clients):
        await run.drop(Drop(n, "close"))
    await check_groups(run.port, await read_back(run.port), all_gone=True)
    for c in everyone:
        if c.task is not None:
            c.task.cancel()


@settings(settings.get_profile("fuzz"), max_examples=150)
@given(st.lists(action, min_size=1, max_size=12))
def test_random_traffic_leaves_broker_alive_and_consistent(actions: list[Send | Drop]) -> None:
    assert run_live(lambda port: scenario(port, actions)) == []


# -- framing: one connection, every line's reply known in advance --------------------------

framed = weighted(
    (
        3,
        st.builds(
            lambda c, i: ((i + c("PING")).encode(), "OK pong"),
            word_case,
            st.sampled_from(["", " ", "\t "]),
        ),
    ),
    (1, st.sampled_from([(b"", None), (b"   ", None), (b"\t", None)])),
    (1, st.just((b"PING x", "ERR usage: PING"))),
    (1, st.just((b"FOO bar", "ERR unknown command: FOO bar"))),
    (1, st.just((b"\xff\xfeok", "ERR invalid utf-8"))),
    (1, st.just((b"PI\x00NG", "ERR invalid NUL byte"))),
    (2, st.integers(MAX_LINE + 2, MAX_LINE * 3).map(lambda n: (b"y" * n, "ERR line too long"))),
    (1, st.just((b"y" * MAX_LINE, "ERR unknown command: " + "y" * 200 + "..."))),
)


@settings(settings.get_profile("fuzz"), max_examples=200)
@given(
    st.lists(st.tuples(framed, st.sampled_from([b"\n", b"\r\n"])), max_size=12),
    st.lists(st.integers(0, 20_000), max_size=10),
)
def test_any_split_of_the_stream_gets_exactly_one_reply_per_line_in_order(
    items: list[tuple[tuple[bytes, str | None], bytes]], splits: list[int]
) -> None:
    # A line of exactly the limit goes with LF only: the framer counts a CR before the LF.
    ends = [b"\n" if len(body) == MAX_LINE else end for (body, _), end in items]
    data = b"".join(body + end for ((body, _), _), end in zip(items, ends, strict=True))
    data += b"QUIT\n"
    expected = [reply for (_, reply), _ in items if reply is not None] + ["OK bye"]

    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        cuts = sorted({s % (len(data) + 1) for s in splits} | {0, len(data)})
        for lo, hi in itertools.pairwise(cuts):
            writer.write(data[lo:hi])
            await writer.drain()
            await asyncio.sleep(0.001)
        got = (await reader.read()).decode().split("\n")
        writer.close()
        assert got == ["OK connected", *expected, ""]

    assert run_live(body) == []


# -- publishes: one read per line or any split, the same replies and the same log ---------

body_text = st.from_regex(r"[a-z0-9][a-z0-9 ]{0,20}", fullmatch=True)


def _pub_item(t: str, m: str) -> tuple[bytes, str, tuple[str, str] | None]:
    if t.endswith(".dlq"):  # only the broker writes dead letters
        return f"PUB {t} {m}".encode(), "ERR dead-letter topics are written by the broker", None
    return f"PUB {t} {m}".encode(), "OK published", (t, m)


publish = weighted(
    (6, st.builds(_pub_item, topic, body_text)),
    (1, st.builds(lambda m: (f"pub t {m}".encode(), "OK published", ("t", m)), body_text)),
    (1, st.just((b"PUB t \xff", "ERR invalid utf-8", None))),
    (1, st.just((b"PUB t a\x00b", "ERR invalid NUL byte", None))),
    (1, st.just((b"PUB t ", "ERR usage: PUB <topic> <message>", None))),
    (1, st.just((b"PUB t " + b"y" * MAX_LINE, "ERR line too long", None))),
    (1, st.just((b"PING", "OK pong", None))),
)


@settings(settings.get_profile("fuzz"), max_examples=100)
@given(
    st.lists(st.tuples(publish, st.sampled_from([b"\n", b"\r\n"])), min_size=1, max_size=15),
    st.one_of(st.none(), st.lists(st.integers(0, 20_000), max_size=10)),
)
def test_publishes_get_the_same_replies_and_log_whether_alone_in_a_read_or_not(
    items: list[tuple[tuple[bytes, str, tuple[str, str] | None], bytes]],
    splits: list[int] | None,
) -> None:
    """A read that is one PUB to a topic already published to takes a shortcut past
    the framer (``splits`` None: one line per read, each reply awaited). Whatever the
    reads, every line gets its reply in order and each accepted publish is stored
    once, in order, with its exact text."""
    lines = [line + end for (line, _, _), end in items]
    expected = [reply for (_, reply, _), _ in items]

    async def body(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await reader.readline() == b"OK connected\n"
        got: list[str] = []
        if splits is None:
            for line, reply in zip(lines, expected, strict=True):
                writer.write(line)
                got.append((await reader.readline()).decode().rstrip("\n"))
                assert got[-1] == reply
        else:
            data = b"".join(lines)
            cuts = sorted({s % (len(data) + 1) for s in splits} | {0, len(data)})
            for lo, hi in itertools.pairwise(cuts):
                writer.write(data[lo:hi])
                await writer.drain()
                await asyncio.sleep(0.001)
            for _ in expected:
                got.append((await reader.readline()).decode().rstrip("\n"))
        writer.close()
        assert got == expected
        stored = await read_back(port)
        for t in TOPICS:
            sent = [
                m for (_, _, pub), _ in items if pub is not None and pub[0] == t for m in [pub[1]]
            ]
            assert [text for _, _, text in stored[t]] == sent

    assert run_live(body) == []
