"""Fixtures starting real brokers for the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tidelogbroker import RunningBroker, tidelog_broker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBroker]:
    """One broker shared by a module's tests (topics are named per test)."""
    with tidelog_broker(tmp_path_factory.mktemp("broker"), "--set", "group.initial.rebalance.delay.ms=0") as running:
        yield running
        assert running.alive(), "the broker died during the tests"


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[RunningBroker]:
    """A broker of the test's own (restarts, configuration)."""
    with tidelog_broker(tmp_path) as running:
        yield running
