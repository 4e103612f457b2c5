"""A partition log: append, read, roll, indexes, timestamps, truncation, recovery, bad input, faults."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from logtesting import client_batch, iter_batches, read_all

from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.io import FileIO
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidTimestampError,
    KafkaStorageError,
    MessageTooLargeError,
    OffsetOutOfRangeError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)
from tidelog.broker.protocol.records import Record, build_batch

Opener = Callable[..., PartitionLog]
NOW = 1_700_000_000_000


def append(plog: PartitionLog, values: list[bytes], **kwargs: object) -> tuple[int, int]:
    info = plog.append_as_leader(memoryview(client_batch(values, **kwargs)), clock_ms=NOW)  # type: ignore[arg-type]
    return info.first_offset, info.last_offset


def test_offsets_are_assigned_in_order_and_read_back(open_log: Opener) -> None:
    plog = open_log()
    assert append(plog, [b"a", b"b"]) == (0, 1)
    assert append(plog, [b"c"]) == (2, 2)
    assert plog.log_end_offset == 3
    assert [(r.offset, r.value) for r in read_all(plog)] == [(0, b"a"), (1, b"b"), (2, b"c")]


def test_several_batches_in_one_append(open_log: Opener) -> None:
    plog = open_log()
    buf = client_batch([b"a", b"b"]) + client_batch([b"c"]) + client_batch([b"d", b"e", b"f"])
    info = plog.append_as_leader(memoryview(buf), leader_epoch=5, clock_ms=NOW)
    assert (info.first_offset, info.last_offset, info.records) == (0, 5, 6)
    region = plog.read(0, 1 << 20).region
    assert region is not None
    headers = [h for h, _ in iter_batches(region.read())]
    region.release()
    assert [h.base_offset for h in headers] == [0, 2, 3]
    assert {h.partition_leader_epoch for h in headers} == {5}


def test_segments_roll_on_size_and_reads_cross_them(open_log: Opener) -> None:
    plog = open_log()
    for i in range(60):
        append(plog, [bytes([i]) * 100])
    assert len(plog.segments) >= 3
    assert all(s.size <= 4096 for s in plog.segments)
    assert [r.value for r in read_all(plog)] == [bytes([i]) * 100 for i in range(60)]
    names = sorted(p.name for p in plog.directory.iterdir())
    assert f"{plog.segments[1].base_offset:020d}.log" in names
    assert f"{plog.segments[1].base_offset:020d}.index" in names


def test_roll_on_segment_ms_uses_record_timestamps(open_log: Opener, small_config: LogConfig) -> None:
    import dataclasses

    plog = open_log(dataclasses.replace(small_config, segment_ms=1000))
    append(plog, [b"a"], timestamp=NOW)
    append(plog, [b"b"], timestamp=NOW + 500)
    assert len(plog.segments) == 1
    append(plog, [b"c"], timestamp=NOW + 1500)
    assert len(plog.segments) == 2


def test_roll_on_full_index(open_log: Opener, small_config: LogConfig) -> None:
    import dataclasses

    config = dataclasses.replace(small_config, segment_bytes=1 << 20, segment_index_bytes=32, index_interval_bytes=1)
    plog = open_log(config)
    for i in range(30):
        append(plog, [bytes([i]) * 10])
    assert len(plog.segments) > 2
    assert all(len(s.offset_index) <= 4 for s in plog.segments)
    assert len(read_all(plog)) == 30


def test_read_from_the_middle_of_a_batch_returns_the_whole_batch(open_log: Opener) -> None:
    plog = open_log()
    append(plog, [b"a", b"b", b"c"])
    info = plog.read(1, 1 << 20)
    assert info.region is not None
    assert info.region.first_offset == 0
    info.release()


def test_read_is_batch_aligned_and_bounded_by_max_bytes(open_log: Opener) -> None:
    plog = open_log()
    for i in range(20):
        append(plog, [bytes([i]) * 50])
    batch_size = plog.segments[0].size // 20 if len(plog.segments) == 1 else None
    info = plog.read(0, 250)
    assert info.region is not None
    data = info.region.read()
    info.release()
    assert len(data) <= 250
    assert sum(h.size for h, _ in iter_batches(data)) == len(data)
    if batch_size:
        assert len(data) == (250 // batch_size) * batch_size


def test_regions_know_the_offset_after_them(open_log: Opener) -> None:
    plog = open_log()
    for i in range(20):
        append(plog, [bytes([i]) * 50, b"x"])  # two records per batch
    for start, max_bytes in ((0, 250), (7, 400), (38, 1 << 20)):
        info = plog.read(start, max_bytes)
        assert info.region is not None
        last = [h for h, _ in iter_batches(info.region.read())][-1]
        assert info.region.next_offset == last.next_offset
        info.release()


def test_min_one_returns_an_oversize_first_batch(open_log: Opener) -> None:
    plog = open_log()
    append(plog, [b"x" * 1000])
    info = plog.read(0, 10)
    assert info.region is not None
    assert info.region.length > 10
    info.release()
    assert plog.read(0, 10, min_one=False).region is None


def test_high_watermark_bounds_reads(open_log: Opener) -> None:
    plog = open_log()
    for _ in range(5):
        append(plog, [b"a", b"b"])
    info = plog.read(0, 1 << 20, max_offset=4)
    assert info.region is not None
    headers = [h for h, _ in iter_batches(info.region.read())]
    info.release()
    assert headers[-1].last_offset == 3
    assert plog.read(4, 1 << 20, max_offset=4).region is None


def test_out_of_range_offsets(open_log: Opener) -> None:
    plog = open_log()
    append(plog, [b"a"])
    assert plog.read(1, 100).region is None  # the log end: nothing yet, not an error
    with pytest.raises(OffsetOutOfRangeError) as info:
        plog.read(2, 100)
    assert info.value.error_code == 1
    plog.advance_log_start_offset(1)
    with pytest.raises(OffsetOutOfRangeError):
        plog.read(0, 100)


def test_offsets_by_timestamp(open_log: Opener) -> None:
    plog = open_log()
    for i in range(30):
        append(plog, [b"x" * 80, b"y"], timestamp=NOW + i * 10)
    # batch i holds offsets 2i (ts NOW+10i) and 2i+1 (ts NOW+10i+1)
    assert plog.offset_for_timestamp(NOW) == (0, NOW)
    assert plog.offset_for_timestamp(NOW + 101) == (21, NOW + 101)
    assert plog.offset_for_timestamp(NOW + 102) == (22, NOW + 110)
    assert plog.offset_for_timestamp(NOW + 10_000) is None
    assert plog.offset_of_max_timestamp() == (59, NOW + 291)


def test_time_index_after_truncation_and_reopen(open_log: Opener) -> None:
    """The time index's last timestamp (which decides whether an append adds an entry) follows
    truncation and reloading: entries for new, smaller timestamps appear where they belong."""
    plog = open_log()
    for i in range(20):
        append(plog, [b"x" * 120], timestamp=NOW + i * 10)
    index = plog.active.time_index
    assert index.last_timestamp == index.keys[-1]
    plog.truncate_to(4)
    assert index.last_timestamp == (index.keys[-1] if index.keys else -1)
    for i in range(20):
        append(plog, [b"y" * 120], timestamp=NOW + 1 + i * 5)
    assert list(index.keys) == sorted(set(index.keys))
    assert plog.offset_for_timestamp(NOW + 52) == (15, NOW + 56)
    plog.close()
    reopened = open_log(recovery_point=0)
    assert reopened.offset_for_timestamp(NOW + 52) == (15, NOW + 56)
    active = reopened.active.time_index
    assert active.last_timestamp == (active.keys[-1] if active.keys else -1)


def test_log_append_time_config(open_log: Opener, small_config: LogConfig) -> None:
    import dataclasses

    plog = open_log(dataclasses.replace(small_config, message_timestamp_type="LogAppendTime"))
    info = plog.append_as_leader(memoryview(client_batch([b"a"], timestamp=5)), clock_ms=NOW)
    assert info.log_append_time == NOW
    assert [r.timestamp for r in read_all(plog)] == [NOW]


@pytest.mark.parametrize(
    ("make", "error", "code"),
    [
        (lambda: _flip_crc(client_batch([b"a"])), CorruptRecordError, 2),
        (lambda: _set_magic(client_batch([b"a"]), 1), UnsupportedForMessageFormatError, 43),
        (lambda: client_batch([b"a"])[:30], CorruptRecordError, 2),
        (lambda: client_batch([b"x" * 2000]), MessageTooLargeError, 10),
        (bytearray, InvalidRecordError, 87),
        (lambda: _count_mismatch(client_batch([b"a", b"b"])), InvalidRecordError, 87),
        (
            lambda: bytearray(build_batch([Record(0, NOW, b"k", b"v")], attributes=rb.CONTROL_FLAG)),
            InvalidRecordError,
            87,
        ),
        (lambda: client_batch([b"a"], timestamp=NOW + 7_200_000), InvalidTimestampError, 32),
        (
            lambda: bytearray(build_batch([Record(0, NOW, b"k", b"v")], attributes=rb.TRANSACTIONAL_FLAG)),
            InvalidRecordError,
            87,
        ),
        (lambda: bytearray(build_batch([Record(0, NOW, b"k", b"v")], producer_id=7)), InvalidRecordError, 87),
        (lambda: _negative_count(client_batch([b"a"])), CorruptRecordError, 2),
        (lambda: client_batch([b"a"]) + client_batch([b"b"])[:-1], CorruptRecordError, 2),
    ],
)
def test_bad_input_is_refused_with_its_code_and_nothing_is_appended(
    open_log: Opener, small_config: LogConfig, make: Callable[[], bytearray], error: type[Exception], code: int
) -> None:
    import dataclasses

    plog = open_log(dataclasses.replace(small_config, max_message_bytes=1024))
    append(plog, [b"before"])
    with pytest.raises(error) as info:
        plog.append_as_leader(memoryview(make()), clock_ms=NOW)
    assert info.value.error_code == code  # type: ignore[attr-defined]
    append(plog, [b"after"])
    assert [(r.offset, r.value) for r in read_all(plog)] == [(0, b"before"), (1, b"after")]


def test_record_set_larger_than_a_segment(open_log: Opener) -> None:
    plog = open_log()
    with pytest.raises(RecordListTooLargeError):
        plog.append_as_leader(memoryview(client_batch([b"x" * 5000])), clock_ms=NOW)


def test_compacted_topic_requires_keys(open_log: Opener, small_config: LogConfig) -> None:
    import dataclasses

    plog = open_log(dataclasses.replace(small_config, cleanup_policy=frozenset({"compact"})))
    with pytest.raises(InvalidRecordError, match="key"):
        plog.append_as_leader(memoryview(client_batch([b"v"], keys=[None])), clock_ms=NOW)
    plog.append_as_leader(memoryview(client_batch([b"v"], keys=[b"k"])), clock_ms=NOW)


def _flip_crc(data: bytearray) -> bytearray:
    data[-1] ^= 1
    return data


def _set_magic(data: bytearray, magic: int) -> bytearray:
    data[rb.MAGIC_OFFSET] = magic
    return data


def _negative_count(data: bytearray) -> bytearray:
    import struct

    struct.pack_into(">i", data, 57, -1)  # recordsCount
    struct.pack_into(">I", data, rb.CRC_OFFSET, rb.batch_crc(data, 0, len(data)))
    return data


def test_a_transactional_batch_with_a_producer_id_is_accepted(open_log: Opener) -> None:
    plog = open_log()
    batch = build_batch([Record(0, NOW, b"k", b"v")], attributes=rb.TRANSACTIONAL_FLAG, producer_id=7, base_sequence=0)
    assert plog.append_as_leader(memoryview(bytearray(batch)), clock_ms=NOW).first_offset == 0


def test_timestamps_older_than_before_max_are_refused(open_log: Opener, small_config: LogConfig) -> None:
    import dataclasses

    plog = open_log(dataclasses.replace(small_config, message_timestamp_before_max_ms=1000))
    with pytest.raises(InvalidTimestampError):
        plog.append_as_leader(memoryview(client_batch([b"a"], timestamp=NOW - 5000)), clock_ms=NOW)
    assert append(plog, [b"b"], timestamp=NOW - 500) == (0, 0)


def test_appends_reserve_blocks_ahead_and_give_them_back(open_log: Opener, small_config: LogConfig) -> None:
    """Blocks are reserved past the data without changing the file size (what recovery reads), and
    released when the segment stops growing; where the file system cannot, appends go on without."""
    import dataclasses

    plog = open_log(dataclasses.replace(small_config, segment_bytes=64 << 20))
    append(plog, [b"x" * 500])
    segment = plog.active
    path = segment.handle.path
    assert path.stat().st_size == segment.size
    probe = os.open(path, os.O_RDWR)
    try:
        supported = FileIO().preallocate(probe, 0, 4096)
    finally:
        os.close(probe)
    if supported:
        assert segment.reserved >= segment.size + FileIO.preallocate_bytes
        assert path.stat().st_blocks * 512 >= FileIO.preallocate_bytes
    else:
        assert segment.reserved > segment.config.segment_bytes  # stopped trying
    append(plog, [b"y" * 500])
    assert path.stat().st_size == segment.size
    plog.roll(NOW)
    assert path.stat().st_blocks * 512 < 64 << 10  # the reservation is gone with the roll
    assert [r.value for r in read_all(plog)] == [b"x" * 500, b"y" * 500]
    append(plog, [b"z"])
    plog.close()
    assert plog.active.handle.path.stat().st_blocks * 512 < 64 << 10
    reopened = open_log(recovery_point=0)
    assert [r.value for r in read_all(reopened)] == [b"x" * 500, b"y" * 500, b"z"]


class ShortWrites(FileIO):
    """Every single write stores at most 100 bytes, as a signal-interrupted ``pwrite`` may."""

    def pwrite(self, fd: int, data: object, position: int) -> int:
        return os.pwrite(fd, memoryview(data)[:100], position)  # type: ignore[arg-type]


def test_short_writes_are_completed(tmp_path: Path, small_config: LogConfig) -> None:
    plog = PartitionLog.open(tmp_path / "t-0", small_config, io=ShortWrites())
    for i in range(5):
        plog.append_as_leader(memoryview(client_batch([bytes([i]) * 300])), clock_ms=NOW)
    assert [r.value for r in read_all(plog)] == [bytes([i]) * 300 for i in range(5)]
    assert plog.active.handle.path.stat().st_size == plog.active.size


def _count_mismatch(data: bytearray) -> bytearray:
    import struct

    struct.pack_into(">i", data, 57, 5)
    struct.pack_into(">I", data, rb.CRC_OFFSET, rb.batch_crc(data, 0, len(data)))
    return data


def test_truncate_to_removes_the_tail_and_appends_continue(open_log: Opener) -> None:
    plog = open_log()
    for i in range(40):
        append(plog, [bytes([i]) * 90, b"z"])
    plog.truncate_to(31)  # mid-batch: the batch holding 31 (30..31) goes
    assert plog.log_end_offset == 30
    assert append(plog, [b"new"]) == (30, 30)
    values = [r.value for r in read_all(plog)]
    assert len(values) == 31
    assert values[-1] == b"new"


def test_truncate_fully_and_start_at(open_log: Opener) -> None:
    plog = open_log()
    append(plog, [b"a"])
    plog.truncate_fully_and_start_at(1000)
    assert (plog.log_start_offset, plog.log_end_offset) == (1000, 1000)
    assert append(plog, [b"b"]) == (1000, 1000)


def test_follower_append_keeps_leader_offsets(open_log: Opener) -> None:
    leader = open_log()
    for i in range(5):
        append(leader, [bytes([i])] * 3)
    region = leader.read(0, 1 << 20).region
    assert region is not None
    data = bytearray(region.read())
    region.release()
    follower = PartitionLog.open(leader.directory.with_name("follower-0"), leader.config)
    info = follower.append_as_follower(memoryview(data))
    assert (info.first_offset, info.last_offset) == (0, 14)
    assert read_all(follower) == read_all(leader)
    with pytest.raises(InvalidRecordError):
        follower.append_as_follower(memoryview(data))  # offsets going backwards


def test_clean_reopen_rescans_nothing_before_the_recovery_point(open_log: Opener) -> None:
    plog = open_log()
    for i in range(100):
        append(plog, [bytes([i]) * 100])
    plog.close()
    rp = plog.recovery_point
    assert rp == 100
    reopened = open_log(recovery_point=rp)
    # Untouched old segments never loaded their index: nothing before the recovery point was read.
    assert not any(s.offset_index._loaded for s in reopened.segments[:-1])
    assert [r.value for r in read_all(reopened)] == [bytes([i]) * 100 for i in range(100)]


def test_torn_tail_is_truncated_on_recovery(open_log: Opener) -> None:
    plog = open_log()
    for i in range(10):
        append(plog, [bytes([i]) * 50])
    plog.close()
    path = plog.active.handle.path
    good = path.stat().st_size
    with path.open("ab") as f:
        f.write(client_batch([b"torn" * 20])[:40])
    reopened = open_log(recovery_point=0)
    assert reopened.log_end_offset == 10
    assert path.stat().st_size == good
    assert append(reopened, [b"next"]) == (10, 10)


def test_corrupt_batch_truncates_it_and_everything_after(open_log: Opener) -> None:
    plog = open_log()
    for i in range(60):
        append(plog, [bytes([i]) * 100])
    plog.close()
    second = plog.segments[1]
    with second.handle.path.open("r+b") as f:
        f.seek(300)
        f.write(b"\xff" * 8)
    reopened = open_log(recovery_point=second.base_offset)
    values = [r.value for r in read_all(reopened)]
    assert values == [bytes([i]) * 100 for i in range(len(values))]
    assert second.base_offset <= len(values) < 60
    assert len(reopened.segments) == 2


def test_missing_and_corrupt_indexes_are_rebuilt(open_log: Opener) -> None:
    plog = open_log()
    for i in range(30):
        append(plog, [bytes([i]) * 60])
    plog.close()
    seg = plog.segments[0]
    seg.offset_index.path.write_bytes(b"\x00\x00\x00\x05\x00\x00\x00\x10\x00\x00\x00\x01\x00\x00\x00\x05")
    plog.segments[-1].offset_index.path.unlink()
    reopened = open_log(recovery_point=0)
    assert [r.value for r in read_all(reopened)] == [bytes([i]) * 60 for i in range(30)]
    assert len(reopened.segments[0].offset_index) > 0


def test_a_corrupt_index_of_a_trusted_segment_is_rebuilt_when_used(open_log: Opener) -> None:
    plog = open_log()
    for i in range(90):
        append(plog, [bytes([i]) * 60])
    plog.close()
    assert len(plog.segments) >= 3
    plog.segments[0].offset_index.path.write_bytes(b"\x01\x02\x03")
    plog.segments[1].time_index.path.write_bytes(b"\x00" * 24)  # two equal timestamps: not increasing
    reopened = open_log(recovery_point=plog.recovery_point)
    assert not reopened.segments[0].offset_index._loaded  # trusted: not read at open
    assert [r.value for r in read_all(reopened)] == [bytes([i]) * 60 for i in range(90)]
    assert len(reopened.segments[0].offset_index) > 0
    assert reopened.segments[1].offset_of_max_timestamp >= 0
    assert reopened.offset_for_timestamp(NOW) == (0, NOW)


class DiskFullAfter(FileIO):
    """Fails writes with ENOSPC once ``budget`` bytes were written (a partial write first)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def write_all(self, fd: int, position: int, buffers: object) -> None:
        total = sum(len(b) for b in buffers)  # type: ignore[attr-defined]
        if total > self.budget:
            data = b"".join(bytes(b) for b in buffers)  # type: ignore[attr-defined]
            os.pwrite(fd, data[: self.budget], position)
            self.budget = 0
            raise OSError(28, "No space left on device")
        self.budget -= total
        super().write_all(fd, position, buffers)  # type: ignore[arg-type]

    def pwrite(self, fd: int, data: object, position: int) -> int:  # the append path's single write
        self.write_all(fd, position, [data])
        return len(data)  # type: ignore[arg-type]


def test_disk_full_keeps_the_log_readable_to_the_last_complete_batch(tmp_path: Path, small_config: LogConfig) -> None:
    io = DiskFullAfter(budget=400)
    plog = PartitionLog.open(tmp_path / "t-0", small_config, io=io)
    appended = 0
    size = len(client_batch([b"\x00" * 40]))
    while io.budget >= size:
        plog.append_as_leader(memoryview(client_batch([bytes([appended]) * 40])), clock_ms=NOW)
        appended += 1
    assert appended >= 3
    with pytest.raises(KafkaStorageError) as info:
        plog.append_as_leader(memoryview(client_batch([b"\xff" * 40])), clock_ms=NOW)
    assert info.value.error_code == 56
    assert [r.value for r in read_all(plog)] == [bytes([i]) * 40 for i in range(appended)]
    assert plog.active.handle.path.stat().st_size == plog.active.size
    io.budget = 1 << 20  # space is back: appends resume at the next offset
    assert append(plog, [b"more"]) == (appended, appended)
    plog.close()
    reopened = PartitionLog.open(tmp_path / "t-0", small_config, recovery_point=0)
    assert len(read_all(reopened)) == appended + 1


def test_flush_messages_advances_the_recovery_point(open_log: Opener, small_config: LogConfig) -> None:
    import dataclasses

    plog = open_log(dataclasses.replace(small_config, flush_messages=3))
    append(plog, [b"a", b"b"])
    assert plog.recovery_point == 0
    append(plog, [b"c"])
    assert plog.recovery_point == 3


def test_truncate_to_a_segment_boundary_after_a_clean_reopen(open_log: Opener) -> None:
    plog = open_log()
    for i in range(60):
        append(plog, [bytes([i]) * 100])
    plog.close()
    reopened = open_log(recovery_point=plog.recovery_point)
    boundary = reopened.segments[-1].base_offset
    reopened.truncate_to(boundary)
    assert reopened.log_end_offset == boundary
    assert append(reopened, [b"next"]) == (boundary, boundary)
    assert len(read_all(reopened)) == boundary + 1
