"""Record batch v2 headers: layout, structural validation, in-place patching. No I/O, no copies.

A v2 batch (Kafka's "magic 2" format) starts with a fixed 61-byte header, big-endian::

    0  baseOffset int64        (the broker assigns it: outside the CRC)
    8  batchLength int32       (bytes after this field)
    12 partitionLeaderEpoch    (the broker stamps it: outside the CRC)
    16 magic int8 = 2
    17 crc uint32              (CRC-32C of bytes 21..end)
    21 attributes int16        (bits 0-2 codec, 3 LogAppendTime, 4 transactional, 5 control)
    23 lastOffsetDelta int32
    27 baseTimestamp int64, 35 maxTimestamp int64
    43 producerId int64, 51 producerEpoch int16, 53 baseSequence int32
    57 recordsCount int32

Record data after the header is never touched here: it may be compressed, and the hot path keeps it
so. ``records`` decodes records when something (compaction, timestamp lookup) really needs them.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import crc32c

from tidelog.broker.protocol.errors import CorruptRecordError, UnsupportedForMessageFormatError

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: bytes not counted by batchLength
MIN_BATCH_LENGTH = HEADER_SIZE - LOG_OVERHEAD  # 49
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
MAX_TIMESTAMP_OFFSET = 35
CRC_START = 21
CURRENT_MAGIC = 2

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_LOG_APPEND = 0x08
TRANSACTIONAL_FLAG = 0x10
CONTROL_FLAG = 0x20
DELETE_HORIZON_FLAG = 0x40

NO_PRODUCER_ID = -1
NO_TIMESTAMP = -1

_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")


class BatchHeader(NamedTuple):
    """The decoded 61-byte header of one v2 batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & TIMESTAMP_TYPE_LOG_APPEND)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG)


def read_header(buf: memoryview | bytes | bytearray, pos: int = 0) -> BatchHeader:
    """Decode the header at ``pos``; the caller has checked that 61 bytes are there."""
    return BatchHeader._make(HEADER.unpack_from(buf, pos))


def check_header(buf: memoryview | bytes, pos: int) -> BatchHeader:
    """Validate the 61-byte header at ``pos`` alone (magic, length bounds, counts) and return it.

    Raises ``UnsupportedForMessageFormatError`` for magic 0/1 and ``CorruptRecordError`` for any
    other inconsistency.
    """
    remaining = len(buf) - pos
    if remaining < MAGIC_OFFSET + 1:
        raise CorruptRecordError(f"truncated batch: {remaining} bytes left at position {pos}, need a header")
    magic = buf[pos + MAGIC_OFFSET]
    if magic in (0, 1):
        raise UnsupportedForMessageFormatError(f"message format v{magic} is not supported; use v2 batches")
    if magic != CURRENT_MAGIC:
        raise CorruptRecordError(f"unknown magic byte {magic} at position {pos}")
    if remaining < HEADER_SIZE:
        raise CorruptRecordError(f"truncated batch header: {remaining} bytes at position {pos}")
    header = read_header(buf, pos)
    if header.batch_length < MIN_BATCH_LENGTH:
        raise CorruptRecordError(f"batch length {header.batch_length} is below the minimum {MIN_BATCH_LENGTH}")
    if header.last_offset_delta < 0 or header.records_count < 0:
        raise CorruptRecordError(
            f"negative lastOffsetDelta {header.last_offset_delta} or recordsCount {header.records_count}"
        )
    return header


def check_batch(buf: memoryview, pos: int, *, verify_crc: bool = True) -> BatchHeader:
    """Validate the whole batch at ``pos`` in ``buf`` (header, full length present, CRC-32C)."""
    header = check_header(buf, pos)
    remaining = len(buf) - pos
    if header.size > remaining:
        raise CorruptRecordError(
            f"batch of {header.size} bytes at position {pos} overruns the {remaining} bytes available"
        )
    if verify_crc:
        actual = crc32c.crc32c(buf[pos + CRC_START : pos + header.size])
        if actual != header.crc:
            raise CorruptRecordError(
                f"CRC mismatch at position {pos}: stored {header.crc:#010x}, computed {actual:#010x}"
            )
    return header


def batch_crc(buf: memoryview | bytearray, pos: int, size: int) -> int:
    """CRC-32C over the CRC-covered part of the batch at ``pos`` of ``size`` bytes."""
    return int(crc32c.crc32c(memoryview(buf)[pos + CRC_START : pos + size]))


def set_base_offset(buf: memoryview | bytearray, pos: int, base_offset: int) -> None:
    """Rewrite baseOffset in place (outside the CRC: no recompute)."""
    _INT64.pack_into(buf, pos, base_offset)


def set_leader_epoch(buf: memoryview | bytearray, pos: int, epoch: int) -> None:
    """Rewrite partitionLeaderEpoch in place (outside the CRC: no recompute)."""
    _INT32.pack_into(buf, pos + LOG_OVERHEAD, epoch)


def set_log_append_time(buf: memoryview | bytearray, pos: int, size: int, now_ms: int) -> None:
    """Stamp LogAppendTime: set the timestamp-type bit and maxTimestamp, then recompute the CRC."""
    attributes = _INT16.unpack_from(buf, pos + ATTRIBUTES_OFFSET)[0] | TIMESTAMP_TYPE_LOG_APPEND
    _INT16.pack_into(buf, pos + ATTRIBUTES_OFFSET, attributes)
    _INT64.pack_into(buf, pos + MAX_TIMESTAMP_OFFSET, now_ms)
    _UINT32.pack_into(buf, pos + CRC_OFFSET, batch_crc(buf, pos, size))
