"""Typed errors with stable codes, and the reconnect policy, without a broker or a sleep."""

from __future__ import annotations

import pytest

from linemq.clients import (
    AuthFailed,
    BrokerError,
    ConnectionLost,
    ExponentialBackoff,
    InvalidRequest,
    LimitExceeded,
    LinemqError,
    NotFound,
    PermissionDenied,
    ProtocolError,
    Retry,
    StorageUnavailable,
    Timeout,
)
from linemq.clients.errors import error_for


@pytest.mark.parametrize(
    ("reason", "kind", "code"),
    [
        ("permission denied", PermissionDenied, "permission_denied"),
        ("auth required", AuthFailed, "auth_failed"),
        ("auth failed", AuthFailed, "auth_failed"),
        ("storage unavailable: [Errno 28] No space left", StorageUnavailable,
         "storage_unavailable"),
        ("message too large (limit 100 bytes)", LimitExceeded, "limit_exceeded"),
        ("too many subscriptions", LimitExceeded, "limit_exceeded"),
        ("line too long", LimitExceeded, "limit_exceeded"),
        ("message msg_1_a not found in pending messages (ack timeout expired)", NotFound,
         "not_found"),
        ("no pending messages for this consumer", NotFound, "not_found"),
        ("dead letter nope not found in jobs.dlq", NotFound, "not_found"),
        ("no group g on jobs", NotFound, "not_found"),
        ("not subscribed to chat", NotFound, "not_found"),
        ("usage: PUB <topic> <message>", InvalidRequest, "invalid_request"),
        ("invalid topic name", InvalidRequest, "invalid_request"),
        ("unknown command: FOO", InvalidRequest, "invalid_request"),
        ("something new", BrokerError, "broker_error"),
    ],
)  # fmt: skip
def test_err_reasons_map_to_typed_errors_with_stable_codes(
    reason: str, kind: type[BrokerError], code: str
) -> None:
    error = error_for(reason)
    assert type(error) is kind
    assert error.code == code and error.reason == reason and str(error) == reason
    assert isinstance(error, BrokerError) and isinstance(error, LinemqError)


def test_connection_errors_are_also_the_builtin_kinds_callers_already_catch() -> None:
    assert isinstance(ConnectionLost("x"), ConnectionError)
    assert isinstance(Timeout("x"), TimeoutError)
    for kind in (ConnectionLost, Timeout, ProtocolError):
        assert issubclass(kind, LinemqError) and not issubclass(kind, BrokerError)
    assert (ConnectionLost.code, Timeout.code, ProtocolError.code) == (
        "connection_lost",
        "timeout",
        "protocol_error",
    )


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = ExponentialBackoff(base=0.1, cap=1.0, jitter=False)
    assert [backoff.compute(n) for n in range(7)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.compute(10_000) == 1.0  # no overflow however long it has failed


def test_jitter_spreads_each_delay_below_its_ceiling() -> None:
    assert ExponentialBackoff(base=0.1, cap=1.0, rand=lambda: 0.5).compute(3) == pytest.approx(0.2)
    assert ExponentialBackoff(base=0.1, cap=1.0, rand=lambda: 0.0).compute(9) == 0.0


def test_retry_tries_at_once_then_backs_off_then_gives_up() -> None:
    retry = Retry(ExponentialBackoff(base=1, cap=4, jitter=False), max_attempts=3)
    assert [retry.delay(n) for n in range(4)] == [0.0, 1.0, 2.0, None]
    assert Retry(ExponentialBackoff(jitter=False)).delay(1000) == 5.0  # forever by default


@pytest.mark.parametrize(
    "make",
    [
        lambda: ExponentialBackoff(base=0),
        lambda: ExponentialBackoff(base=2, cap=1),
        lambda: Retry(max_attempts=0),
    ],
)
def test_nonsense_policies_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_a_put_dead_letter_has_named_fields_not_storage_keys() -> None:
    import base64
    import json

    from linemq.clients.protocol import DlqLine, encode_nack, parse_server_line

    letter = {
        "topic": "jobs", "id": "msg_1_a", "offset": 4, "ts": 10.5, "msg": "\\u0000bin",
        "group": "w", "attempts": 4, "reason": "nacked", "replayed": None,
        "original": {"b64": base64.b64encode(b"\x00bin").decode(), "k": "acct-7", "p": 2,
                     "h": {"trace": "abc 123"}, "pid": "job-42", "exp": 99.5},
    }  # fmt: skip
    line = parse_server_line(f"DLQ jobs 1 {json.dumps(letter)}\n".encode())
    assert isinstance(line, DlqLine)
    d = line.letter
    assert (d.payload, d.key, d.priority, d.headers) == (
        b"\x00bin",
        "acct-7",
        "high",
        {"trace": "abc 123"},
    )
    assert (d.publisher_id, d.expires_at, d.deliver_at) == ("job-42", 99.5, None)
    assert encode_nack("m1", "1.5s") == encode_nack("m1", 1.5) == b"NACK m1 1.5\n"
