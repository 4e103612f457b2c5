"""The target-broker fixture machinery: a broker that cannot start fails the tests, never skips them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import realkafka


def test_missing_java_is_a_clear_start_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(realkafka.shutil, "which", lambda _name: None)
    with pytest.raises(realkafka.BrokerStartError, match="`java` is not on PATH"):
        realkafka.java_cmd(tmp_path, "kafka.Kafka", log4j=tmp_path / "log4j2.properties")


def test_a_broker_that_cannot_start_fails_every_test_that_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    @contextlib.contextmanager
    def broken(workdir: Path) -> Iterator[realkafka.RunningBroker]:
        calls.append(workdir)
        raise realkafka.BrokerStartError("no jars here")
        yield  # pragma: no cover

    shared = realkafka._Shared()
    monkeypatch.setitem(realkafka._STARTERS, "kafka", broken)
    for _ in range(2):
        with pytest.raises(pytest.fail.Exception, match="cannot start the kafka target broker: no jars here"):
            shared.acquire("kafka")
    assert len(calls) == 1  # tried once, then the same failure is reported without retrying
    assert "kafka" not in shared.running


def test_kafka_is_the_default_target() -> None:
    assert "kafka" in realkafka.BROKER_KINDS
    assert set(realkafka.BROKER_KINDS) <= set(realkafka._STARTERS)
