"""The data directory's format version and owner (broker/log/layout.py) through LogManager.open."""

from __future__ import annotations

from pathlib import Path

import pytest
from logtesting import client_batch

from tidelog.broker.log import layout
from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.manager import LogManager
from tidelog.broker.protocol.errors import KafkaStorageError

CONFIG = LogConfig(segment_bytes=4096, index_interval_bytes=128, segment_index_bytes=4096)


def test_a_new_directory_is_stamped_with_the_format_and_owner(tmp_path: Path) -> None:
    LogManager.open(tmp_path, CONFIG, node_id=3).close_sync()
    assert layout.read(tmp_path) == {"version": str(layout.FORMAT_VERSION), "node.id": "3"}


def test_an_older_unstamped_directory_is_read_and_stamped(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path, CONFIG)
    manager.get_or_create("t", 0).append_as_leader(memoryview(client_batch([b"v"])), clock_ms=1_700_000_000_000)
    manager.close_sync()
    (tmp_path / layout.FILE).unlink()  # as a Tidelog from before the file existed left it
    again = LogManager.open(tmp_path, CONFIG, node_id=0)
    try:
        assert again.logs[("t", 0)].log_end_offset == 1
    finally:
        again.close_sync()
    assert layout.read(tmp_path)["version"] == str(layout.FORMAT_VERSION)


def test_a_newer_format_is_refused_untouched(tmp_path: Path) -> None:
    LogManager.open(tmp_path, CONFIG).close_sync()
    newer = f"{layout.HEADER}\nversion={layout.FORMAT_VERSION + 1}\n"
    (tmp_path / layout.FILE).write_text(newer)
    with pytest.raises(KafkaStorageError, match="written by a newer Tidelog"):
        LogManager.open(tmp_path, CONFIG)
    assert (tmp_path / layout.FILE).read_text() == newer
    (tmp_path / layout.FILE).write_text(f"version={layout.FORMAT_VERSION}\n")
    LogManager.open(tmp_path, CONFIG).close_sync()  # the lock was released by the refusal


def test_another_brokers_volume_is_refused(tmp_path: Path) -> None:
    LogManager.open(tmp_path, CONFIG, node_id=1).close_sync()
    with pytest.raises(KafkaStorageError, match="belongs to broker 1, not to this broker \\(2\\)"):
        LogManager.open(tmp_path, CONFIG, node_id=2)
    LogManager.open(tmp_path, CONFIG).close_sync()  # a tool that names no broker may still read it
    assert layout.read(tmp_path)["node.id"] == "1"
