"""A storage failure met by an operator command is one ERR line (a 503 over HTTP), and the
connection stays usable."""

from __future__ import annotations

import pytest

from linemq.broker.engine.engine import Engine
from linemq.broker.storage.records import StorageError
from tests.conftest import BrokerFactory
from tests.ops.http import Http
from tests.wire import Wire


async def _fail(*args: object) -> None:
    raise StorageError("No space left on device")


@pytest.mark.parametrize(
    ("method", "line"),
    [("purge", "PURGE jobs.dlq"), ("delete_group", "DELETE jobs workers")],
)
async def test_a_storage_failure_is_err_storage_unavailable(
    brokers: BrokerFactory, monkeypatch: pytest.MonkeyPatch, method: str, line: str
) -> None:
    broker = await brokers.start()
    monkeypatch.setattr(Engine, method, _fail)
    client = await Wire.open(broker.port)
    assert await client.cmd(line) == "ERR storage unavailable: No space left on device"
    assert await client.cmd("PING") == "OK pong"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("purge", "/api/dlq/purge", {"topic": "jobs"}),
        ("delete_group", "/api/groups/delete", {"topic": "jobs", "group": "workers"}),
    ],
)
async def test_over_http_a_storage_failure_is_a_503_with_the_same_reason(
    brokers: BrokerFactory,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    body: dict[str, str],
) -> None:
    broker = await brokers.start(http_port=0)
    monkeypatch.setattr(Engine, method, _fail)
    answer = await Http(broker).post(path, body, status=503)
    assert answer == {"error": "storage unavailable: No space left on device"}
