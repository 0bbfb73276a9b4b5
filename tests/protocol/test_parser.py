"""The pure parser: bytes in, commands or ProtocolError out, never anything else."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linemq.broker.protocol import (
    BAD_TERMINATOR,
    LINE_TOO_LONG,
    Ack,
    Clean,
    Delete,
    DeleteTopic,
    DlqList,
    Groups,
    Heartbeat,
    History,
    LineFramer,
    Nack,
    Ping,
    ProtocolError,
    Pub,
    Purge,
    Quit,
    Replay,
    Status,
    Sub,
    Term,
    Touch,
    Unsub,
    is_valid_name,
    parse_line,
)
from linemq.broker.protocol.parser import MAX_NOTE_BYTES, MAX_REASON_BYTES, REASON_CUT


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"PING", Ping()),
        (b"ping", Ping()),
        (b"QUIT\r", Quit()),
        (b"HEARTBEAT", Heartbeat()),
        (b"PUB chat hello  world", Pub("chat", "hello  world")),
        (b"pub chat  leading space kept", Pub("chat", " leading space kept")),
        (b"PUB chat trailing \r", Pub("chat", "trailing ")),
        ("PUB chat héllo wörld ✓".encode(), Pub("chat", "héllo wörld ✓")),
        (b"SUB chat", Sub("chat")),
        (b"SUB chat workers", Sub("chat", "workers")),
        (b"UNSUB chat", Unsub("chat")),
        (b"UNSUB chat workers", Unsub("chat", "workers")),
        (b"HISTORY chat 10", History("chat", 10)),
        (b"ACK msg_1_0000abcd", Ack("msg_1_0000abcd")),
        (b"NACK msg_1_0000abcd", Nack("msg_1_0000abcd")),
        (b"NACK msg_1_0000abcd 2.5", Nack("msg_1_0000abcd", 2.5)),
        (b"TOUCH msg_1_0000abcd", Touch("msg_1_0000abcd")),
        (b"GROUPS chat", Groups("chat")),
        (b"DLQ chat", DlqList("chat", 100)),
        (b"DLQ chat 5", DlqList("chat", 5)),
        (b"REPLAY chat all", Replay("chat", None)),
        (b"REPLAY chat msg_1_0000abcd", Replay("chat", "msg_1_0000abcd")),
        (b"SUB chat.dlq", Sub("chat.dlq")),
    ],
)
def test_parses_commands(line: bytes, command: object) -> None:
    assert parse_line(line) == command


@pytest.mark.parametrize("line", [b"", b"\r", b"   ", b" \t "])
def test_blank_lines_are_ignored(line: bytes) -> None:
    assert parse_line(line) is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"FOO bar", "unknown command: FOO bar"),
        (b"PUB chat", "usage: PUB <topic> <message>"),
        (b"PUB chat ", "usage: PUB <topic> <message>"),
        (b"PUB", "usage: PUB <topic> <message>"),
        (b"SUB", "usage: SUB <topic> [group_id]"),
        (b"SUB a b c", "usage: SUB <topic> [group_id]"),
        (b"HISTORY chat", "usage: HISTORY <topic> <n>"),
        (b"HISTORY chat x", "n must be an integer"),
        (b"HISTORY chat -1", "n must not be negative"),
        (b"ACK", "usage: ACK <message_id>"),
        (b"NACK id soon", "delay must be a number of seconds between 0 and 31536000"),
        (b"NACK id nan", "delay must be a number of seconds between 0 and 31536000"),
        (b"PING now", "usage: PING"),
        (b"PUB ../x hi", "invalid topic name"),
        (b"PUB /etc/x hi", "invalid topic name"),
        (b"PUB a/b hi", "invalid topic name"),
        (b"PUB .hidden hi", "invalid topic name"),
        (b"PUB " + b"a" * 201 + b" hi", "invalid topic name"),
        (b"SUB chat ../g", "invalid group name"),
        (b"PUB chat \xff\xfe", "invalid utf-8"),
        (b"PUB a\x00b hi", "invalid NUL byte"),
    ],
)
def test_errors_carry_the_err_text(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_line(line)
    assert info.value.reason == reason


def test_unknown_command_echo_is_bounded() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_line(b"X" * 10_000)
    assert len(info.value.reason) < 300


def test_names() -> None:
    assert is_valid_name("orders.eu-west_1")
    assert is_valid_name("a" * 200)
    for bad in ["", ".x", "a..b", "a/b", "a b", "a" * 201, "é", "a\x00"]:
        assert not is_valid_name(bad)


def drain(framer: LineFramer, data: bytes = b"") -> list[object]:
    """Feed ``data`` and pull every complete item."""
    framer.feed(data)
    out: list[object] = []
    while (item := framer.next()) is not None:
        out.append(item)
    return out


def test_framer_whole_and_split_at_every_point() -> None:
    stream = b"PING\nPUB chat hello\r\nSUB chat\n"
    expected = [b"PING", b"PUB chat hello\r", b"SUB chat"]
    for cut in range(len(stream) + 1):
        framer = LineFramer(1024)
        assert drain(framer, stream[:cut]) + drain(framer, stream[cut:]) == expected
    framer = LineFramer(1024)
    assert [x for b in stream for x in drain(framer, bytes([b]))] == expected


def test_framer_reports_a_long_line_once_and_recovers() -> None:
    framer = LineFramer(10)
    assert drain(framer, b"x" * 8) == []
    assert drain(framer, b"x" * 8) == [LINE_TOO_LONG]
    assert drain(framer, b"y" * 100) == []
    assert drain(framer, b"zz\nPING\n") == [b"PING"]
    assert framer.buffered == 0
    assert drain(framer, b"a" * 11 + b"\nPING\n") == [LINE_TOO_LONG, b"PING"]


def test_framer_gives_a_lone_line_only_when_it_is_the_whole_read_and_nothing_waits() -> None:
    framer = LineFramer(10)
    assert framer.lone_line(b"PUB t x\n") == b"PUB t x"
    assert framer.lone_line(b"PUB t x\r\n") == b"PUB t x\r"
    assert framer.lone_line(b"PUB t x") is None  # no end yet
    assert framer.lone_line(b"PING\nPING\n") is None  # two lines: feed them
    assert framer.lone_line(b"x" * 11 + b"\n") is None  # over the limit: next() reports it
    assert drain(framer, b"PI") == []
    assert framer.lone_line(b"NG\n") is None  # the end of a buffered line
    assert drain(framer, b"NG\n") == [b"PING"]
    assert framer.lone_line(b"PING\n") == b"PING"
    assert drain(framer, b"x" * 11) == [LINE_TOO_LONG]
    assert framer.lone_line(b"PING\n") is None  # the rest of the long line, discarded
    assert drain(framer, b"PING\n") == []


def test_framer_takes_counted_payloads_with_any_bytes() -> None:
    stream = b"PUT t 5\na\nb\x00c\nPING\nPUT t 3\r\nxyz\r\nPING\n"
    for cut in range(len(stream) + 1):
        framer = LineFramer(1024)
        framer.feed(stream[:cut])
        got: list[object] = []
        want_payload = 0
        for chunk in (b"", stream[cut:]):
            framer.feed(chunk)
            while True:
                item = framer.take(want_payload) if want_payload else framer.next()
                if item is None:
                    break
                got.append(item)
                want_payload = (
                    int(item.split()[2])
                    if isinstance(item, bytes) and item.startswith(b"PUT") and not want_payload
                    else 0
                )
        assert got == [b"PUT t 5", b"a\nb\x00c", b"PING", b"PUT t 3\r", b"xyz", b"PING"]


def test_framer_reports_a_payload_without_newline_and_skips_refused_ones() -> None:
    framer = LineFramer(1024)
    framer.feed(b"abcXPING\n")
    assert framer.take(3) is BAD_TERMINATOR
    assert framer.next() == b"XPING"
    framer.feed(b"0123456789")
    framer.skip(20)
    assert framer.next() is None
    framer.feed(b"0123456789\nPING\n")
    assert framer.next() == b"PING"


@given(st.binary(max_size=2000), st.integers(min_value=0, max_value=2000))
def test_parser_never_raises_anything_but_protocol_errors(data: bytes, cut: int) -> None:
    framer = LineFramer(256)
    for item in drain(framer, data[:cut]) + drain(framer, data[cut:]):
        if item is LINE_TOO_LONG:
            continue
        assert isinstance(item, bytes)
        with contextlib.suppress(ProtocolError):
            parse_line(item)


@given(
    st.lists(
        st.sampled_from(
            [
                b"PING",
                b"PUB t x y",
                b"SUB t g",
                b"HISTORY t 3",
                b"ACK i",
                b"NACK i 1",
                b"GROUPS t",
                b"\xff",
                b"",
                b"QUIT",
                b"DLQ t",
            ]
        ),
        max_size=30,
    ),
    st.lists(st.integers(min_value=0, max_value=400), max_size=5),
)
def test_framing_is_independent_of_chunking(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    framer = LineFramer(1024)
    got: list[object] = []
    prev = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts):
        got += drain(framer, stream[prev:cut])
        prev = cut
    got += drain(framer, stream[prev:])
    assert got == lines


def test_crlf_line_exactly_at_the_limit_is_accepted() -> None:
    framer = LineFramer(10)
    assert drain(framer, b"x" * 10 + b"\r\n" + b"y" * 11 + b"\r\n") == [
        b"x" * 10 + b"\r",
        LINE_TOO_LONG,
    ]


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"NACK m1 reason=db down", Nack("m1", None, "db down")),
        (b"NACK m1 5s reason=db down", Nack("m1", 5.0, "db down")),
        (b"NACK m1 2.5 reason= a=b reason=c ", Nack("m1", 2.5, "a=b reason=c")),
        (b"NACK m1\treason=x", Nack("m1", None, "x")),
        (b"TERM m1", Term("m1")),
        (b"TERM m1   ", Term("m1")),
        (b'term m1 bad input: "x" \\ 5', Term("m1", 'bad input: "x" \\ 5')),
        ("TERM m1 ünïcode ✓".encode(), Term("m1", "ünïcode ✓")),
    ],
)
def test_consumer_failure_texts(line: bytes, command: object) -> None:
    assert parse_line(line) == command


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"TERM", "usage: TERM <message_id> [reason text]"),
        (b"TERM  ", "usage: TERM <message_id> [reason text]"),
        (b"NACK m1 reason=", "reason must not be empty"),
        (b"NACK m1 reason=  ", "reason must not be empty"),
        (b"NACK m1 1 2 reason=x", "usage: NACK <message_id> [delay_seconds] [reason=<text>]"),
        (b"NACK reason=x", "usage: NACK <message_id> [delay_seconds] [reason=<text>]"),
        (b"NACK m1 soon reason=x", "delay must be a number of seconds between 0 and 31536000"),
        # Forms refused before reasons existed are refused as before.
        (b"NACK m1 1 2", "usage: NACK <message_id> [delay_seconds]"),
        (b"NACK m1 xreason=x", "delay must be a number of seconds between 0 and 31536000"),
        (b"NACK m1 db down", "usage: NACK <message_id> [delay_seconds]"),
    ],
)
def test_consumer_failure_text_errors(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_line(line)
    assert info.value.reason == reason


def test_a_long_reason_is_cut_to_whole_characters_with_a_marker() -> None:
    cmd = parse_line(("TERM m1 " + "é" * 800).encode())
    assert isinstance(cmd, Term) and cmd.reason is not None
    assert cmd.reason.endswith(REASON_CUT)
    assert len(cmd.reason.encode()) <= MAX_REASON_BYTES
    assert cmd.reason[: -len(REASON_CUT)] == "é" * ((MAX_REASON_BYTES - len(REASON_CUT)) // 2)
    exact = "x" * MAX_REASON_BYTES
    assert parse_line(f"NACK m1 reason={exact}".encode()) == Nack("m1", None, exact)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"STATUS chat 12", Status("chat", offset=12)),
        (b"STATUS chat msg_1_0000abcd", Status("chat", id="msg_1_0000abcd")),
        (b"TOUCH m progress=50", Touch("m", 50.0)),
        (b"TOUCH m progress=12.5% two  of five ", Touch("m", 12.5, "two  of five")),
        (b"TOUCH m progress=uploading parts", Touch("m", None, "uploading parts")),
        (b"DELETE chat", DeleteTopic("chat")),
        (b"DELETE chat force=true", DeleteTopic("chat", True)),
        (b"DELETE chat force", Delete("chat", "force")),  # a group named force, as before
        (b"PURGE chat.dlq 7", Purge("chat.dlq", "7")),
        (b"CLEAN chat acked older=7d", Clean("chat", 7 * 86400.0)),
        (b"CLEAN chat keep=10 older=1h", Clean("chat", 3600.0, 10)),
    ],
)
def test_parses_lookup_and_deletion_commands(line: bytes, command: object) -> None:
    assert parse_line(line) == command


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"STATUS chat", "usage: STATUS <topic> <message_id>|<offset>"),
        (b"STATUS chat 1 2", "usage: STATUS <topic> <message_id>|<offset>"),
        (b"TOUCH m progress=101", "progress must be a number from 0 to 100, or text"),
        (b"TOUCH m progress=-1 x", "progress must be a number from 0 to 100, or text"),
        (b"TOUCH m progress= ", "progress must be a number from 0 to 100, or text"),
        (b"TOUCH m n progress=5", "usage: TOUCH <message_id> [progress=<0-100|text>]"),
        (b"TOUCH m later", "usage: TOUCH <message_id>"),
        (b"DELETE orders.*", "invalid topic name"),
        (b"PURGE chat.dlq 1 2", "usage: PURGE <topic>.dlq"),
        (b"CLEAN chat", "usage: CLEAN <topic> [acked] older=<duration>|keep=<n>"),
        (b"CLEAN chat keep=1 keep=2", "usage: CLEAN <topic> [acked] older=<duration>|keep=<n>"),
        (b"CLEAN chat keep=-1", "keep must be a non-negative integer"),
    ],
)
def test_lookup_and_deletion_errors(line: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_line(line)
    assert info.value.reason == reason


def test_a_progress_note_is_cut_to_its_limit() -> None:
    command = parse_line(b"TOUCH m progress=" + "é".encode() * 500)
    assert isinstance(command, Touch) and command.note is not None
    assert len(command.note.encode()) <= MAX_NOTE_BYTES and command.note.endswith(REASON_CUT)
