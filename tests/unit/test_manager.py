"""The log manager: many partitions, checkpoints, the directory lock, background work, file budget."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from logtesting import client_batch, read_all

from tidelog.broker.log import checkpoint
from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.manager import LogManager, ManagerSettings
from tidelog.broker.protocol.errors import KafkaStorageError
from tidelog.broker.protocol.records import Record, build_batch

NOW = 1_700_000_000_000
CONFIG = LogConfig(segment_bytes=4096, index_interval_bytes=128)


def test_many_partitions_survive_a_clean_restart(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path, CONFIG)
    for p in range(20):
        plog = manager.get_or_create("orders.v1", p)
        for i in range(p + 1):
            plog.append_as_leader(memoryview(client_batch([b"%d-%d" % (p, i)])), clock_ms=NOW)
    manager.close_sync()
    points = checkpoint.read(tmp_path / checkpoint.RECOVERY_POINT)
    assert points == {("orders.v1", p): p + 1 for p in range(20)}
    again = LogManager.open(tmp_path, CONFIG)
    assert sorted(again.logs) == [("orders.v1", p) for p in range(20)]
    for p in range(20):
        plog = again.get("orders.v1", p)
        assert plog is not None
        assert [r.value for r in read_all(plog)] == [b"%d-%d" % (p, i) for i in range(p + 1)]
    again.close_sync()


def test_a_second_manager_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path, CONFIG)
    with pytest.raises(KafkaStorageError, match="in use"):
        LogManager.open(tmp_path, CONFIG)
    manager.close_sync()
    LogManager.open(tmp_path, CONFIG).close_sync()


def test_a_damaged_checkpoint_costs_a_rescan_not_data(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path, CONFIG)
    plog = manager.get_or_create("t", 0)
    for i in range(30):
        plog.append_as_leader(memoryview(client_batch([bytes([i]) * 100])), clock_ms=NOW)
    manager.close_sync()
    (tmp_path / checkpoint.RECOVERY_POINT).write_text("0\n5\ngarbage")
    again = LogManager.open(tmp_path, CONFIG)
    plog2 = again.get("t", 0)
    assert plog2 is not None
    assert len(read_all(plog2)) == 30
    again.close_sync()


def test_deleting_a_partition_removes_its_directory(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path, CONFIG)
    manager.get_or_create("gone", 0).append_as_leader(memoryview(client_batch([b"x"])), clock_ms=NOW)
    manager.delete("gone", 0)
    assert manager.get("gone", 0) is None
    assert not any(p.name.startswith("gone-0") for p in tmp_path.iterdir())
    manager.close_sync()


def test_open_files_stay_within_the_budget(tmp_path: Path) -> None:
    manager = LogManager.open(tmp_path, CONFIG, settings=ManagerSettings(max_open_files=8))
    for p in range(12):
        plog = manager.get_or_create("t", p)
        for i in range(40):
            plog.append_as_leader(memoryview(client_batch([bytes([i]) * 200])), clock_ms=NOW)
    for p in range(12):
        plog = manager.get("t", p)
        assert plog is not None
        assert len(read_all(plog)) == 40
    # the 12 active segments keep their descriptors; old segments are closed beyond the budget
    assert manager.cache.open_count <= 12 + 1
    manager.close_sync()


def test_background_tick_flushes_rolled_segments_retains_and_compacts(tmp_path: Path) -> None:
    compact = dataclasses.replace(CONFIG, cleanup_policy=frozenset({"compact"}), min_cleanable_dirty_ratio=0.1)
    deleting = dataclasses.replace(CONFIG, retention_bytes=4096, retention_ms=-1)

    def topic_config(topic: str) -> LogConfig:
        return compact if topic == "__consumer_offsets" else deleting

    settings = ManagerSettings(retention_check_interval_ms=0, cleaner_backoff_ms=0, checkpoint_interval_ms=0)

    async def scenario() -> LogManager:
        manager = LogManager.open(tmp_path, CONFIG, settings=settings, topic_config=topic_config)
        offsets = manager.get_or_create("__consumer_offsets", 0)
        events = manager.get_or_create("events", 0)
        for i in range(200):
            record = Record(0, NOW, b"group-%d" % (i % 5), b"offset=%d" % i + b"x" * 40)
            offsets.append_as_leader(memoryview(bytearray(build_batch([record]))), clock_ms=NOW)
            events.append_as_leader(memoryview(client_batch([b"e" * 100])), clock_ms=NOW)
        assert offsets.recovery_point == 0
        await manager.tick(NOW)
        assert offsets.recovery_point == offsets.active.base_offset > 0  # rolled segments flushed
        assert events.log_start_offset > 0  # retention.bytes applied
        assert len({r.key for r in read_all(offsets)}) == 5
        assert len(read_all(offsets)) < 200  # compacted
        return manager

    manager = asyncio.run(scenario())
    manager.close_sync()
    assert checkpoint.read(tmp_path / checkpoint.CLEANER_OFFSET)[("__consumer_offsets", 0)] > 0
