"""Every conformance test runs once per store in ``kits.KITS`` (the state store tests:
once per store in ``state_kits.STATE_KITS``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from linemq.broker.storage.log_store import Store
from tests.storage.conformance.kits import KITS, StoreKit
from tests.storage.conformance.state_kits import STATE_KITS, StateKit


@pytest.fixture(params=sorted(KITS))
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> StoreKit:
    return KITS[request.param](request, tmp_path)


@pytest.fixture
def store(kit: StoreKit) -> Iterator[Store]:
    opened = kit.open()
    yield opened
    opened.close()


@pytest.fixture(params=sorted(STATE_KITS))
def state_kit(request: pytest.FixtureRequest, tmp_path: Path) -> StateKit:
    return STATE_KITS[request.param](request, tmp_path)
