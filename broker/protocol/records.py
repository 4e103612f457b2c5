"""Records inside v2 batches: decode them (decompressing) and build batches from records.

Off the hot path: compaction reads keys with it, timestamp lookups find the exact record, tests and
the CLI build batches with it. The layout of one record::

    length varint, attributes int8, timestampDelta varlong, offsetDelta varint,
    keyLength varint + key, valueLength varint + value, headerCount varint + headers
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol import codecs
from tidelog.broker.protocol.errors import CorruptRecordError

Header = tuple[str, bytes | None]


@dataclass(frozen=True, slots=True)
class Record:
    """One record with absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = field(default=())


def zigzag_varint(value: int) -> bytes:
    """Encode a signed integer as a zig-zag varint (varlong for 64-bit values)."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a zig-zag varint at ``pos``; returns (value, new position)."""
    shift = 0
    n = 0
    while True:
        if pos >= len(buf):
            raise CorruptRecordError("truncated varint in record")
        byte = buf[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint longer than 10 bytes")
    return (n >> 1) ^ -(n & 1), pos


def _read_bytes(buf: bytes | memoryview, pos: int) -> tuple[bytes | None, int]:
    length, pos = read_varint(buf, pos)
    if length < 0:
        return None, pos
    if pos + length > len(buf):
        raise CorruptRecordError("record field overruns the record")
    return bytes(buf[pos : pos + length]), pos + length


def iter_records(buf: bytes | memoryview, pos: int = 0) -> Iterator[Record]:
    """Decode every record of the (already validated) batch at ``pos``, decompressing as needed."""
    header = rb.read_header(buf, pos)
    end = pos + header.size
    body: bytes | memoryview = memoryview(buf)[pos + rb.HEADER_SIZE : end]
    if header.compression != codecs.NONE:
        body = codecs.decompress(header.compression, body)
    cursor = 0
    for _ in range(header.records_count):
        length, cursor = read_varint(body, cursor)
        record_end = cursor + length
        if length < 0 or record_end > len(body):
            raise CorruptRecordError("record length overruns its batch")
        cursor += 1  # attributes, unused
        ts_delta, cursor = read_varint(body, cursor)
        offset_delta, cursor = read_varint(body, cursor)
        key, cursor = _read_bytes(body, cursor)
        value, cursor = _read_bytes(body, cursor)
        count, cursor = read_varint(body, cursor)
        headers: list[Header] = []
        for _h in range(max(count, 0)):
            name, cursor = _read_bytes(body, cursor)
            hvalue, cursor = _read_bytes(body, cursor)
            headers.append(((name or b"").decode("utf-8", "replace"), hvalue))
        if cursor != record_end:
            raise CorruptRecordError("record length does not match its fields")
        timestamp = header.max_timestamp if header.is_log_append_time else header.base_timestamp + ts_delta
        yield Record(header.base_offset + offset_delta, timestamp, key, value, tuple(headers))


def _encode_bytes(data: bytes | None) -> bytes:
    if data is None:
        return zigzag_varint(-1)
    return zigzag_varint(len(data)) + data


def encode_record(offset_delta: int, timestamp_delta: int, record: Record) -> bytes:
    """One record's bytes, length prefix included."""
    parts = [
        b"\x00",
        zigzag_varint(timestamp_delta),
        zigzag_varint(offset_delta),
        _encode_bytes(record.key),
        _encode_bytes(record.value),
        zigzag_varint(len(record.headers)),
    ]
    for name, hvalue in record.headers:
        parts.append(_encode_bytes(name.encode()))
        parts.append(_encode_bytes(hvalue))
    body = b"".join(parts)
    return zigzag_varint(len(body)) + body


def build_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    last_offset_delta: int | None = None,
    compression: int = codecs.NONE,
    attributes: int = 0,
    producer_id: int = rb.NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    base_timestamp: int | None = None,
    max_timestamp: int | None = None,
) -> bytes:
    """Encode ``records`` (offsets relative to ``base_offset``) as one v2 batch with a valid CRC.

    ``last_offset_delta`` defaults to the last record's delta; compaction passes the original
    batch's value so that offsets keep their meaning when records are dropped.
    """
    if base_timestamp is None:
        base_timestamp = records[0].timestamp if records else rb.NO_TIMESTAMP
    if max_timestamp is None:
        max_timestamp = max((r.timestamp for r in records), default=base_timestamp)
    body = b"".join(encode_record(r.offset - base_offset, r.timestamp - base_timestamp, r) for r in records)
    if compression != codecs.NONE:
        body = codecs.compress(compression, body)
    if last_offset_delta is None:
        last_offset_delta = records[-1].offset - base_offset if records else 0
    size = rb.HEADER_SIZE + len(body)
    buf = bytearray(size)
    rb.HEADER.pack_into(
        buf,
        0,
        base_offset,
        size - rb.LOG_OVERHEAD,
        partition_leader_epoch,
        rb.CURRENT_MAGIC,
        0,
        (attributes & ~rb.COMPRESSION_MASK) | compression,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    buf[rb.HEADER_SIZE :] = body
    crc = rb.batch_crc(buf, 0, size)
    buf[rb.CRC_OFFSET : rb.CRC_OFFSET + 4] = crc.to_bytes(4, "big")
    return bytes(buf)
