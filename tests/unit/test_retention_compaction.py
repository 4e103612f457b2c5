"""Retention (time, size, log start offset) and compaction (latest per key, tombstones)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from logtesting import client_batch, read_all

from tidelog.broker.log import cleaner, retention
from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.protocol.records import Record, build_batch

Opener = Callable[..., PartitionLog]
NOW = 1_700_000_000_000


def fill(plog: PartitionLog, count: int, *, timestamp: int = NOW, size: int = 200) -> None:
    for i in range(count):
        plog.append_as_leader(memoryview(client_batch([bytes([i % 256]) * size], timestamp=timestamp)), clock_ms=NOW)


def test_retention_bytes_deletes_oldest_segments(open_log: Opener, small_config: LogConfig) -> None:
    plog = open_log(dataclasses.replace(small_config, retention_bytes=8000, retention_ms=-1))
    fill(plog, 100)
    before = plog.size_bytes
    removed = retention.apply_retention(plog, NOW)
    assert removed > 0
    assert plog.size_bytes <= 8000 + small_config.segment_bytes
    assert plog.size_bytes < before
    assert plog.log_start_offset == plog.segments[0].base_offset
    records = read_all(plog)
    assert records[0].offset == plog.log_start_offset
    assert records[-1].offset == 99


def test_retention_ms_uses_record_timestamps_and_rolls_an_expired_active_segment(
    open_log: Opener, small_config: LogConfig
) -> None:
    plog = open_log(dataclasses.replace(small_config, retention_ms=60_000))
    fill(plog, 50, timestamp=NOW - 120_000)
    assert retention.apply_retention(plog, NOW - 100_000) == 0  # nothing is a minute old yet
    removed = retention.apply_retention(plog, NOW)
    assert removed >= 2
    assert plog.log_start_offset == plog.log_end_offset == 50
    assert plog.active.size == 0
    fill(plog, 1)
    assert [r.offset for r in read_all(plog)] == [50]


def test_retention_keeps_what_is_above_the_high_watermark(open_log: Opener, small_config: LogConfig) -> None:
    plog = open_log(dataclasses.replace(small_config, retention_bytes=0, retention_ms=-1))
    fill(plog, 60)
    retention.apply_retention(plog, NOW, high_watermark=0)
    assert plog.log_start_offset == 0
    retention.apply_retention(plog, NOW, high_watermark=plog.log_end_offset)
    assert plog.log_start_offset == plog.active.base_offset


def test_delete_records_then_retention_drops_whole_segments_below(open_log: Opener) -> None:
    plog = open_log()
    fill(plog, 60)
    second = plog.segments[1].base_offset
    plog.advance_log_start_offset(second + 2)
    assert plog.log_start_offset == second + 2
    retention.apply_retention(plog, NOW)
    assert plog.segments[0].base_offset == second
    assert read_all(plog)[0].offset == second + 2


def test_deleted_segments_stay_readable_while_pinned(open_log: Opener, small_config: LogConfig) -> None:
    plog = open_log(dataclasses.replace(small_config, retention_bytes=0, retention_ms=-1, file_delete_delay_ms=0))
    fill(plog, 40)
    info = plog.read(0, 1 << 20)
    assert info.region is not None
    retention.apply_retention(plog, NOW)
    plog.purge_deleted(NOW + 1)
    assert not info.region.handle.path.exists()
    assert info.region.read()  # the pinned descriptor still reads the deleted file
    info.release()


def compacted(config: LogConfig, **changes: object) -> LogConfig:
    return dataclasses.replace(config, cleanup_policy=frozenset({"compact"}), min_cleanable_dirty_ratio=0.0, **changes)


def put(plog: PartitionLog, key: bytes, value: bytes | None, codec: int = 0) -> int:
    batch = bytearray(build_batch([Record(0, NOW, key, value)], compression=codec))
    return plog.append_as_leader(memoryview(batch), clock_ms=NOW).first_offset


def test_compaction_keeps_the_latest_value_per_key(open_log: Opener, small_config: LogConfig) -> None:
    plog = open_log(compacted(small_config))
    latest: dict[bytes, tuple[int, bytes]] = {}
    for i in range(300):
        key = b"key-%d" % (i % 7)
        value = b"value-%d-" % i + b"x" * 50
        latest[key] = (put(plog, key, value, codec=i % 5), value)
    plog.roll(NOW)
    before = plog.size_bytes
    job = cleaner.clean_now(plog, 0, NOW)
    assert job is not None
    assert job.records_removed == 300 - 7
    records = read_all(plog)
    assert {r.key: (r.offset, r.value) for r in records} == latest
    assert len(records) == 7
    assert plog.size_bytes < before / 10
    assert [r.offset for r in records] == sorted(r.offset for r in records)
    put(plog, b"key-0", b"after")  # appends continue at the same end offset
    assert plog.log_end_offset == 301


def test_tombstones_survive_delete_retention_then_go(open_log: Opener, small_config: LogConfig) -> None:
    plog = open_log(compacted(small_config, delete_retention_ms=60_000))
    for i in range(40):
        put(plog, b"k%d" % (i % 4), b"v" * 100)
    put(plog, b"k1", None)
    plog.roll(NOW)
    cleaner.clean_now(plog, 0, NOW + 1000)
    assert {r.key: r.value for r in read_all(plog)}[b"k1"] is None  # tombstone kept for now
    for segment in plog.segments:
        os.utime(segment.handle.path, (NOW / 1000, NOW / 1000))
    cleaner.clean_now(plog, 0, NOW + 120_000)
    assert b"k1" not in {r.key for r in read_all(plog)}
    assert {r.key for r in read_all(plog)} == {b"k0", b"k2", b"k3"}


def test_compaction_leaves_the_active_segment_and_lagging_records(open_log: Opener, small_config: LogConfig) -> None:
    plog = open_log(compacted(small_config, min_compaction_lag_ms=3_600_000))
    for _ in range(60):
        put(plog, b"same", b"v" * 100)
    assert cleaner.plan(plog, 0, NOW) is None  # everything is younger than the lag


def test_interrupted_compaction_is_completed_or_dropped_on_open(tmp_path: Path, small_config: LogConfig) -> None:
    config = compacted(small_config)
    plog = PartitionLog.open(tmp_path / "t-0", config)
    for i in range(200):
        put(plog, b"k%d" % (i % 3), b"v%d" % i + b"x" * 60)
    plog.roll(NOW)
    expected = {r.key: r.value for r in read_all(plog)}
    job = cleaner.plan(plog, 0, NOW)
    assert job is not None
    job.run()  # .swap files written; the process "dies" before install
    plog.close()
    assert list(tmp_path.glob("t-0/*.swap"))
    reopened = PartitionLog.open(tmp_path / "t-0", config, recovery_point=0)
    assert not list(tmp_path.glob("t-0/*.swap"))
    records = read_all(reopened)
    assert {r.key: r.value for r in records} == expected
    assert len(records) == 3
    # A crash while still writing (.cleaned) leaves the originals untouched.
    (tmp_path / "t-0" / "00000000000000000000.log.cleaned").write_bytes(b"partial")
    again = PartitionLog.open(tmp_path / "t-0", config, recovery_point=0)
    assert {r.key: r.value for r in read_all(again)} == expected
