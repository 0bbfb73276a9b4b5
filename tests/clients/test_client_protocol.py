"""The client's encoders and server-line parser, without sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linemq.clients.protocol import (
    HEARTBEAT,
    PING,
    QUIT,
    DeadLetter,
    DlqLine,
    Err,
    GroupLine,
    HistoryLine,
    Msg,
    Ok,
    ProtocolError,
    Replayed,
    encode_ack,
    encode_dlq,
    encode_groups,
    encode_history,
    encode_nack,
    encode_pub,
    encode_replay,
    encode_sub,
    encode_touch,
    encode_unsub,
    parse_replayed,
    parse_server_line,
)


def test_encoders_write_one_upper_case_lf_terminated_line() -> None:
    assert encode_pub("chat", "hi  there ") == b"PUB chat hi  there \n"
    assert encode_sub("chat") == b"SUB chat\n"
    assert encode_sub("chat", "workers") == b"SUB chat workers\n"
    assert encode_unsub("chat") == b"UNSUB chat\n"
    assert encode_unsub("chat", "workers") == b"UNSUB chat workers\n"
    assert encode_history("chat", 10) == b"HISTORY chat 10\n"
    assert encode_ack("msg_1_a") == b"ACK msg_1_a\n"
    assert encode_nack("msg_1_a") == b"NACK msg_1_a\n"
    assert encode_nack("msg_1_a", 5) == b"NACK msg_1_a 5\n"
    assert encode_nack("msg_1_a", 0.25) == b"NACK msg_1_a 0.25\n"
    assert encode_touch("msg_1_a") == b"TOUCH msg_1_a\n"
    assert encode_groups("chat") == b"GROUPS chat\n"
    assert encode_dlq("chat") == b"DLQ chat\n"
    assert encode_dlq("chat", 5) == b"DLQ chat 5\n"
    assert encode_replay("chat", "ALL") == b"REPLAY chat ALL\n"
    assert (PING, QUIT, HEARTBEAT) == (b"PING\n", b"QUIT\n", b"HEARTBEAT\n")


def test_pub_encodes_utf8() -> None:
    assert encode_pub("chat", "héllo ✓") == "PUB chat héllo ✓\n".encode()


@pytest.mark.parametrize(
    "topic", ["", ".hidden", "a..b", "sp ace", "slash/x", "x" * 201, "tab\t", "ünï"]
)
def test_invalid_topic_names_are_refused_before_sending(topic: str) -> None:
    with pytest.raises(ValueError, match="invalid topic name"):
        encode_pub(topic, "x")


def test_longest_valid_name_and_dotted_names_pass() -> None:
    # SUB may create the topic: 196 characters leave room for <topic>.dlq, as on the broker.
    assert encode_sub("a" * 196, "g.1-x_y") == f"SUB {'a' * 196} g.1-x_y\n".encode()
    assert encode_history("a" * 200, 1) == f"HISTORY {'a' * 200} 1\n".encode()
    with pytest.raises(ValueError, match="invalid group name"):
        encode_sub("chat", "bad group")


@pytest.mark.parametrize("text", ["", "two\nlines", "cr\rhere", "nul\x00"])
def test_message_that_is_not_one_nonempty_line_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="message must"):
        encode_pub("chat", text)


@pytest.mark.parametrize("bad", ["", "a b", "a\nb"])
def test_ids_must_be_one_word(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid message id"):
        encode_ack(bad)


@pytest.mark.parametrize("delay", [-1, float("nan"), 365 * 86400 + 1])
def test_nack_delay_out_of_range_is_refused(delay: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        encode_nack("m", delay)


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        encode_history("chat", -1)


def test_parse_ok_and_err() -> None:
    assert parse_server_line(b"OK published\n") == Ok("published")
    assert parse_server_line(b"OK history end\r\n") == Ok("history end")
    assert parse_server_line(b"ERR invalid topic name\n") == Err("invalid topic name")


def test_parse_msg_keeps_spaces_in_text_and_raw_line() -> None:
    line = b"MSG chat msg_1758865780040_e10628bb 7 1758865780.0369835  hello  world \n"
    parsed = parse_server_line(line)
    msg_id = "msg_1758865780040_e10628bb"
    assert parsed == Msg("chat", msg_id, 7, 1758865780.0369835, " hello  world ")
    assert isinstance(parsed, Msg)
    assert parsed.raw == line.decode().rstrip("\n")


def test_parse_history_line() -> None:
    parsed = parse_server_line(b"HISTORY chat msg_1_a 1 1.5 hi there\n")
    assert parsed == HistoryLine("chat", "msg_1_a", 1, 1.5, "hi there")


def test_parse_group_line_generic_counters() -> None:
    parsed = parse_server_line(
        b"GROUP chat workers members=2 inflight=1 waiting=0 lag=5 acked=9 redelivered=3\n"
    )
    assert isinstance(parsed, GroupLine)
    assert (parsed.topic, parsed.group) == ("chat", "workers")
    assert (parsed.members, parsed.inflight, parsed.waiting, parsed.lag, parsed.acked) == (
        2,
        1,
        0,
        5,
        9,
    )
    assert parsed.stats["redelivered"] == 3


def test_parse_dlq_line() -> None:
    letter = {
        "topic": "jobs",
        "id": "msg_1_a",
        "offset": 4,
        "ts": 10.5,
        "msg": "bad job",
        "group": "w",
        "attempts": 3,
        "reason": "ack_timeout",
        "first_delivery_ts": 11.0,
        "last_delivery_ts": 20,
        "dead_ts": 21.0,
        "replayed": {"offset": 9, "id": "msg_2_b", "ts": 30.0},
    }
    raw = json.dumps(letter)
    parsed = parse_server_line(f"DLQ jobs 2 {raw}\n".encode())
    assert parsed == DlqLine(
        "jobs",
        2,
        DeadLetter(
            dlq_offset=2,
            topic="jobs",
            id="msg_1_a",
            offset=4,
            ts=10.5,
            text="bad job",
            group="w",
            attempts=3,
            reason="ack_timeout",
            first_delivery_ts=11.0,
            last_delivery_ts=20.0,
            dead_ts=21.0,
            replayed=Replayed(9, "msg_2_b", 30.0),
            payload=b"bad job",
        ),
    )
    assert isinstance(parsed, DlqLine)
    assert parsed.letter.raw_json == raw
    assert parsed.letter.original is None
    with_original = json.dumps(dict(letter, original={"k": "a"}))
    put = parse_server_line(f"DLQ jobs 3 {with_original}\n".encode())
    assert isinstance(put, DlqLine) and put.letter.original == {"k": "a"}


@pytest.mark.parametrize(
    "line",
    [
        b"HELLO there\n",
        b"MSG chat id notanint 1.0 x\n",
        b"MSG chat id\n",
        b"GROUP chat\n",
        b"GROUP chat g members=lots\n",
        b"DLQ chat 1 {not json\n",
        b"DLQ chat 1 []\n",
        b'DLQ chat 1 {"id": "x"}\n',
        b'DLQ chat 1 {"topic":"chat","id":"x","offset":1,"msg":"m","original":[1]}\n',
        b"OK \xff\n",
    ],
)
def test_malformed_server_lines_raise_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_server_line(line)


def test_parse_replayed() -> None:
    assert parse_replayed("replayed 12") == 12
    with pytest.raises(ProtocolError):
        parse_replayed("published")


names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,30}", fullmatch=True)
texts = st.text(min_size=1).filter(lambda t: not any(c in t for c in "\r\n\x00"))


@given(topic=names, text=texts, offset=st.integers(1, 2**53), ts=st.floats(0, 2e9))
def test_msg_line_round_trips(topic: str, text: str, offset: int, ts: float) -> None:
    line = f"MSG {topic} msg_1_abc {offset} {ts!r} {text}\n".encode()
    assert parse_server_line(line) == Msg(topic, "msg_1_abc", offset, ts, text)
    pub = encode_pub(topic, text)
    assert pub.decode().removeprefix(f"PUB {topic} ").removesuffix("\n") == text
