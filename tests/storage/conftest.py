"""Shared helpers for storage tests: small segments so rolls happen after a few records."""

from __future__ import annotations

import pathlib

import pytest
from storage_helpers import OpenLog

from linemq.broker.storage.topic_log import TopicLog


@pytest.fixture
def open_log(tmp_path: pathlib.Path) -> OpenLog:
    def _open(name: str = "t", segment_bytes: int = 1000) -> TopicLog:
        return TopicLog.open(tmp_path / "topics", name, segment_bytes)

    return _open
