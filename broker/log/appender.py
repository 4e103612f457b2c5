"""Checks on batches before they reach a log: what a leader accepts from producers, and what a
follower accepts from its leader. Pure functions over the request's buffer; nothing is written.

Leader checks (Kafka's ``LogValidator`` without decompression): v2 magic, lengths, CRC-32C,
``recordsCount == lastOffsetDelta + 1``, no client control batches, producer fields consistent,
``max.message.bytes``, CreateTime bounds from the batch header (the header's base and max timestamps
stand for the records'), and, on compacted topics only, a key on every record.
"""

from __future__ import annotations

from typing import NamedTuple

import crc32c

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


class Accepted(NamedTuple):
    """One batch a leader accepted: where it is in the buffer and what the log needs of it."""

    position: int
    size: int
    last_offset_delta: int
    max_timestamp: int
    records: int


def validate_for_leader(buf: memoryview, config: LogConfig, now_ms: int) -> list[Accepted]:
    """Validate a producer's record set; returns its batches. Raises a Kafka-coded error otherwise.

    The hot path: one ``unpack_from`` and one CRC per batch; anything unusual is handed to
    ``check_batch`` / ``check_header`` for the precise error.
    """
    end = len(buf)
    if end > config.segment_bytes:
        raise RecordListTooLargeError(f"record set of {end} bytes exceeds segment.bytes={config.segment_bytes}")
    if end == 0:
        raise InvalidRecordError("the record set is empty")
    max_bytes = config.max_message_bytes
    create_time = config.message_timestamp_type == "CreateTime"
    unpack = rb.HEADER.unpack_from
    out: list[Accepted] = []
    pos = 0
    while pos < end:
        if end - pos < rb.HEADER_SIZE or buf[pos + rb.MAGIC_OFFSET] != rb.CURRENT_MAGIC:
            rb.check_header(buf, pos)  # raises the precise error
        _, length, _, _, crc, attributes, delta, base_ts, max_ts, producer_id, _, base_seq, count = unpack(buf, pos)
        size = length + rb.LOG_OVERHEAD
        if length < rb.MIN_BATCH_LENGTH or delta < 0 or count < 0 or size > end - pos:
            rb.check_batch(buf, pos)  # raises the precise error
        if crc32c.crc32c(buf[pos + rb.CRC_START : pos + size]) != crc:
            rb.check_batch(buf, pos)  # raises CORRUPT_MESSAGE with both CRCs
        if size > max_bytes:
            raise MessageTooLargeError(f"batch of {size} bytes exceeds max.message.bytes={max_bytes}")
        if attributes & rb.CONTROL_FLAG:
            raise InvalidRecordError("clients may not produce control batches")
        if count == 0 or count != delta + 1:
            raise InvalidRecordError(f"recordsCount {count} does not match lastOffsetDelta {delta}")
        if producer_id >= 0 and base_seq < 0:
            raise InvalidRecordError(f"producer id {producer_id} with base sequence {base_seq}")
        if attributes & rb.TRANSACTIONAL_FLAG and producer_id < 0:
            raise InvalidRecordError("a transactional batch needs a producer id")
        if create_time:
            _check_timestamps(base_ts, max_ts, config, now_ms)
        if config.compact:
            for record in iter_records(buf, pos):
                if record.key is None:
                    raise InvalidRecordError("compacted topics accept only records with a key")
        out.append(Accepted(pos, size, delta, max_ts, count))
        pos += size
    return out


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
