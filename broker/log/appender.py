"""Checks on batches before they reach a log: what a leader accepts from producers (and the offsets
it assigns them, patched into the request's own buffer), and what a follower accepts from its leader.
Functions over the request's buffer; no I/O.

Leader checks (Kafka's ``LogValidator`` without decompression): v2 magic, lengths, CRC-32C,
``recordsCount == lastOffsetDelta + 1``, no client control batches, producer fields consistent,
``max.message.bytes``, CreateTime bounds from the batch header (the header's base and max timestamps
stand for the records'), and, on compacted topics only, a key on every record.
"""

from __future__ import annotations

import struct

import crc32c

from tidelog.broker.log.config import LONG_MAX, LogConfig
from tidelog.broker.log.segment import BatchInfo
from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol.errors import (
    InvalidRecordError,
    InvalidTimestampError,
    MessageTooLargeError,
    RecordListTooLargeError,
)
from tidelog.broker.protocol.records import iter_records

Batches = list[tuple[int, rb.BatchHeader]]

# Module constants as globals, read once per batch on the hot path.
# The header fields validation needs (baseOffset, partitionLeaderEpoch and producerEpoch skipped):
# batchLength, magic, crc, attributes, lastOffsetDelta, baseTimestamp, maxTimestamp, producerId,
# baseSequence, recordsCount.
_unpack = struct.Struct(">8xi4xbIhiqqq2xii").unpack_from
_crc32c = crc32c.crc32c
_HEADER_SIZE = rb.HEADER_SIZE
_MAGIC = rb.CURRENT_MAGIC
_LOG_OVERHEAD = rb.LOG_OVERHEAD
_MIN_LENGTH = rb.MIN_BATCH_LENGTH
_CRC_START = rb.CRC_START
_FLAGS = rb.CONTROL_FLAG | rb.TRANSACTIONAL_FLAG  # control: refused; transactional: needs a producer id
_NO_BOUND = 1 << 64  # beyond any int64 timestamp
_pack_batch_start = struct.Struct(">qii").pack_into  # baseOffset, batchLength, partitionLeaderEpoch


def split_batches(buf: memoryview, *, verify_crc: bool = True) -> Batches:
    """(position, header) of every batch in ``buf``, structurally checked; raises on the first bad one."""
    out: Batches = []
    pos = 0
    end = len(buf)
    if end == 0:
        raise InvalidRecordError("the record set is empty")
    while pos < end:
        header = rb.check_batch(buf, pos, verify_crc=verify_crc)
        out.append((pos, header))
        pos += header.size
    return out


def assign_offsets(
    buf: memoryview, config: LogConfig, now_ms: int, next_offset: int, leader_epoch: int
) -> list[BatchInfo]:
    """Validate a producer's record set and assign offsets in place; returns what the segment needs
    of each batch (their offsets run on from ``next_offset`` without gaps). Raises a Kafka-coded
    error otherwise.

    Kafka's ``validateMessagesAndAssignOffsets``: each batch is checked, then its baseOffset and
    partitionLeaderEpoch are written into ``buf`` (outside the CRC), and for LogAppendTime its
    timestamp (the CRC is recomputed). A batch rejected after an earlier one was patched leaves the
    buffer patched but nothing appended. The hot path, per batch: one ``unpack_from``, one CRC, two
    combined tests, one ``pack_into``; a batch failing a test goes to ``check_batch`` or ``_reject``,
    which raise the precise error.
    """
    segment_bytes, max_bytes, append_time, after, before, compact, _ = config.append_settings
    end = len(buf)
    if end > segment_bytes or end == 0:
        _reject_record_set(end, config)
    if append_time:
        latest, earliest = _NO_BOUND, -_NO_BOUND
    else:  # CreateTime bounds as two numbers: LONG_MAX settings put them beyond any int64 timestamp
        latest, earliest = now_ms + after, now_ms - before
    out: list[BatchInfo] = []
    pos = 0
    try:
        while pos < end:
            length, magic, crc, attributes, delta, base_ts, max_ts, producer_id, base_seq, count = _unpack(buf, pos)
            size = length + _LOG_OVERHEAD
            if (
                magic != _MAGIC
                or length < _MIN_LENGTH
                or delta < 0
                or count < 0
                or size > end - pos
                or _crc32c(buf[pos + _CRC_START : pos + size]) != crc
            ):
                rb.check_batch(buf, pos)  # raises the precise error: structure first, then the CRC
            if (
                size > max_bytes
                or count != delta + 1
                or attributes & _FLAGS
                or max_ts > latest
                or earliest > base_ts >= 0
                or (base_seq < 0 and producer_id >= 0)
            ):
                _reject(size, attributes, delta, base_ts, max_ts, producer_id, base_seq, count, config, now_ms)
            if compact:
                _check_keys(buf, pos)
            _pack_batch_start(buf, pos, next_offset, length, leader_epoch)  # batchLength unchanged
            if append_time:
                rb.set_log_append_time(buf, pos, size, now_ms)
                max_ts = now_ms
            next_offset += count
            out.append((pos, size, next_offset - 1, max_ts))
            pos += size
    except struct.error:
        rb.check_header(buf, pos)  # fewer than 61 bytes left: raises the precise error
        raise
    return out


def _reject_record_set(size: int, config: LogConfig) -> None:
    if size == 0:
        raise InvalidRecordError("the record set is empty")
    raise RecordListTooLargeError(f"record set of {size} bytes exceeds segment.bytes={config.segment_bytes}")


def _check_keys(buf: memoryview, pos: int) -> None:
    for record in iter_records(buf, pos):
        if record.key is None:
            raise InvalidRecordError("compacted topics accept only records with a key")


def _reject(
    size: int,
    attributes: int,
    delta: int,
    base_ts: int,
    max_ts: int,
    producer_id: int,
    base_seq: int,
    count: int,
    config: LogConfig,
    now_ms: int,
) -> None:
    """The slow path of ``validate_for_leader``: raise the precise error for a batch that failed the
    combined test (a transactional batch with a producer id is the one case that passes)."""
    if size > config.max_message_bytes:
        raise MessageTooLargeError(f"batch of {size} bytes exceeds max.message.bytes={config.max_message_bytes}")
    if attributes & rb.CONTROL_FLAG:
        raise InvalidRecordError("clients may not produce control batches")
    if count == 0 or count != delta + 1:
        raise InvalidRecordError(f"recordsCount {count} does not match lastOffsetDelta {delta}")
    if producer_id >= 0 and base_seq < 0:
        raise InvalidRecordError(f"producer id {producer_id} with base sequence {base_seq}")
    if attributes & rb.TRANSACTIONAL_FLAG and producer_id < 0:
        raise InvalidRecordError("a transactional batch needs a producer id")
    if config.message_timestamp_type == "CreateTime":
        _check_timestamps(base_ts, max_ts, config, now_ms)


def _check_timestamps(base_ts: int, max_ts: int, config: LogConfig, now_ms: int) -> None:
    after = config.message_timestamp_after_max_ms
    before = config.message_timestamp_before_max_ms
    if max_ts >= 0 and after < LONG_MAX and max_ts > now_ms + after:
        raise InvalidTimestampError(f"timestamp {max_ts} is more than message.timestamp.after.max.ms={after} ahead")
    if base_ts >= 0 and before < LONG_MAX and base_ts < now_ms - before:
        raise InvalidTimestampError(f"timestamp {base_ts} is more than message.timestamp.before.max.ms={before} old")


def validate_for_follower(buf: memoryview, next_offset: int) -> Batches:
    """A leader's batches keep their offsets: they must be intact and start at or after ``next_offset``
    in increasing order (compaction may leave gaps)."""
    batches = split_batches(buf)
    expected = next_offset
    for _pos, header in batches:
        if header.base_offset < expected:
            raise InvalidRecordError(f"batch offset {header.base_offset} is below the expected {expected}")
        expected = header.next_offset
    return batches
