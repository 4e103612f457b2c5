"""Shared fixtures for the unit and integration tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import tbguard

from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.log import PartitionLog

tbguard.install()


@pytest.fixture
def small_config() -> LogConfig:
    """Tiny segments and a dense index, so rolls and index lookups happen within a few batches."""
    return LogConfig(segment_bytes=4096, index_interval_bytes=128, segment_index_bytes=4096)


@pytest.fixture
def open_log(tmp_path: Path, small_config: LogConfig) -> Callable[..., PartitionLog]:
    """Open (or reopen) the partition log ``tmp_path/topic-0``."""

    def opener(config: LogConfig | None = None, **kwargs: int) -> PartitionLog:
        return PartitionLog.open(tmp_path / "topic-0", config or small_config, **kwargs)  # type: ignore[arg-type]

    return opener
