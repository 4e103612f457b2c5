"""Checks on batches before they reach a log: what a leader accepts from producers, and what a
follower accepts from its leader. Pure functions over the request's buffer; nothing is written.

Leader checks (Kafka's ``LogValidator`` without decompression): v2 magic, lengths, CRC-32C,
``recordsCount == lastOffsetDelta + 1``, no client control batches, producer fields consistent,
``max.message.bytes``, CreateTime bounds from the batch header (the header's base and max timestamps
stand for the records'), and, on compacted topics only, a key on every record.
"""

from __future__ import annotations

from tidelog.broker.log.config import LONG_MAX, LogConfig
from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol.errors import (
    InvalidRecordError,
    InvalidTimestampError,
    MessageTooLargeError,
    RecordListTooLargeError,
)
from tidelog.broker.protocol.records import iter_records

Batches = list[tuple[int, rb.BatchHeader]]


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


def validate_for_leader(buf: memoryview, config: LogConfig, now_ms: int) -> Batches:
    """Validate a producer's record set; returns its batches. Raises a Kafka-coded error otherwise."""
    if len(buf) > config.segment_bytes:
        raise RecordListTooLargeError(f"record set of {len(buf)} bytes exceeds segment.bytes={config.segment_bytes}")
    batches = split_batches(buf)
    create_time = config.message_timestamp_type == "CreateTime"
    for pos, header in batches:
        if header.size > config.max_message_bytes:
            raise MessageTooLargeError(
                f"batch of {header.size} bytes exceeds max.message.bytes={config.max_message_bytes}"
            )
        if header.is_control:
            raise InvalidRecordError("clients may not produce control batches")
        if header.records_count == 0 or header.records_count != header.last_offset_delta + 1:
            raise InvalidRecordError(
                f"recordsCount {header.records_count} does not match lastOffsetDelta {header.last_offset_delta}"
            )
        if header.producer_id >= 0 and header.base_sequence < 0:
            raise InvalidRecordError(f"producer id {header.producer_id} with base sequence {header.base_sequence}")
        if header.is_transactional and header.producer_id < 0:
            raise InvalidRecordError("a transactional batch needs a producer id")
        if create_time:
            _check_timestamps(header, config, now_ms)
        if config.compact:
            for record in iter_records(buf, pos):
                if record.key is None:
                    raise InvalidRecordError("compacted topics accept only records with a key")
    return batches


def _check_timestamps(header: rb.BatchHeader, config: LogConfig, now_ms: int) -> None:
    after = config.message_timestamp_after_max_ms
    before = config.message_timestamp_before_max_ms
    if header.max_timestamp >= 0 and after < LONG_MAX and header.max_timestamp > now_ms + after:
        raise InvalidTimestampError(
            f"timestamp {header.max_timestamp} is more than message.timestamp.after.max.ms={after} ahead"
        )
    if header.base_timestamp >= 0 and before < LONG_MAX and header.base_timestamp < now_ms - before:
        raise InvalidTimestampError(
            f"timestamp {header.base_timestamp} is more than message.timestamp.before.max.ms={before} old"
        )


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
