"""Record batch headers, codecs and records: validation errors carry Kafka's codes; patches keep CRCs."""

from __future__ import annotations

import struct

import crc32c
import pytest
from logtesting import CODECS, client_batch

from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol import codecs
from tidelog.broker.protocol.errors import (
    CorruptRecordError,
    UnsupportedForMessageFormatError,
    for_code,
)
from tidelog.broker.protocol.records import Record, build_batch, iter_records


def test_client_batch_validates_and_decodes() -> None:
    data = client_batch([b"a", None, b"c"], keys=[b"k1", b"k2", None])
    header = rb.check_batch(memoryview(data), 0)
    assert header.records_count == 3
    assert header.last_offset_delta == 2
    records = list(iter_records(data))
    assert [(r.offset, r.key, r.value) for r in records] == [(0, b"k1", b"a"), (1, b"k2", None), (2, None, b"c")]


@pytest.mark.parametrize("codec", list(CODECS))
def test_every_codec_from_a_real_client_decodes(codec: str) -> None:
    values = [bytes([i]) * 300 for i in range(20)]
    data = client_batch(values, keys=[b"k%d" % i for i in range(20)], codec=CODECS[codec])
    header = rb.check_batch(memoryview(data), 0)
    assert header.compression == CODECS[codec]
    assert [r.value for r in iter_records(data)] == values


@pytest.mark.parametrize("codec", list(CODECS))
def test_build_batch_round_trips_and_kafka_python_reads_it(codec: str) -> None:
    from kafka.record.default_records import DefaultRecordBatch

    records = [Record(10 + i, 1000 + i, b"k%d" % i, b"v" * i, (("h", b"x"),)) for i in range(5)]
    data = build_batch(records, base_offset=10, compression=CODECS[codec])
    assert list(iter_records(data)) == records
    theirs = DefaultRecordBatch(data)
    assert theirs.validate_crc()
    assert [(r.offset, r.key, r.value) for r in theirs] == [(r.offset, r.key, r.value) for r in records]


def test_patching_offset_and_epoch_keeps_the_crc_valid() -> None:
    data = client_batch([b"x"] * 4)
    rb.set_base_offset(data, 0, 123456789)
    rb.set_leader_epoch(data, 0, 7)
    header = rb.check_batch(memoryview(data), 0)
    assert (header.base_offset, header.partition_leader_epoch, header.last_offset) == (123456789, 7, 123456792)


def test_log_append_time_recomputes_the_crc() -> None:
    data = client_batch([b"x"] * 2)
    rb.set_log_append_time(data, 0, len(data), 42)
    header = rb.check_batch(memoryview(data), 0)
    assert header.is_log_append_time
    assert header.max_timestamp == 42
    assert {r.timestamp for r in iter_records(data)} == {42}


def test_crc_mismatch_is_corrupt_message() -> None:
    data = client_batch([b"hello"])
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC mismatch") as info:
        rb.check_batch(memoryview(data), 0)
    assert info.value.error_code == 2


@pytest.mark.parametrize("magic", [0, 1])
def test_old_magic_is_unsupported_for_message_format(magic: int) -> None:
    data = client_batch([b"hello"])
    data[rb.MAGIC_OFFSET] = magic
    with pytest.raises(UnsupportedForMessageFormatError) as info:
        rb.check_batch(memoryview(data), 0)
    assert info.value.error_code == 43


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.__setitem__(rb.MAGIC_OFFSET, 3), "unknown magic"),
        (lambda d: struct.pack_into(">i", d, 8, 10), "below the minimum"),
        (lambda d: struct.pack_into(">i", d, 8, 10_000), "overruns"),
        (lambda d: d.__delitem__(slice(40, None)), "truncated batch header"),
        (lambda d: d.__delitem__(slice(5, None)), "truncated batch"),
        (lambda d: struct.pack_into(">i", d, 23, -5), "negative lastOffsetDelta"),
    ],
)
def test_impossible_batches_are_corrupt(mutate: object, message: str) -> None:
    data = client_batch([b"hello"])
    mutate(data)  # type: ignore[operator]
    with pytest.raises(CorruptRecordError, match=message):
        rb.check_batch(memoryview(data), 0)


def test_error_codes_map_back_to_classes() -> None:
    assert for_code(2) is CorruptRecordError
    assert for_code(43) is UnsupportedForMessageFormatError
    assert for_code(36).name == "TOPIC_ALREADY_EXISTS"
    assert for_code(36) is for_code(36)
    assert for_code(9999).error_code == 9999


def test_damaged_compressed_block_is_corrupt() -> None:
    with pytest.raises(CorruptRecordError):
        codecs.decompress(codecs.LZ4, b"not lz4 at all")


def test_xerial_snappy_matches_java_framing() -> None:
    payload = b"abc" * 50_000
    framed = codecs.compress(codecs.SNAPPY, payload)
    assert framed.startswith(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01")
    assert codecs.decompress(codecs.SNAPPY, framed) == payload


def test_crc_helper_matches_the_crc32c_package() -> None:
    data = client_batch([b"abc"])
    assert rb.batch_crc(data, 0, len(data)) == crc32c.crc32c(bytes(data[21:]))
