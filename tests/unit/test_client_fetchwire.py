"""The hand-written Fetch response decoder agrees with kio's, at every version, without copying records."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from kio.serial import entity_writer

from tidelog.broker.client import messages
from tidelog.broker.client.errors import BrokerConnectionError
from tidelog.broker.client.fetchwire import decode_fetch_response
from tidelog.broker.client.versions import CLIENT_RANGES, ApiKey
from tidelog.broker.protocol.records import Record, build_batch

LO, HI = CLIENT_RANGES[ApiKey.FETCH]
BATCHES = build_batch([Record(0, 5, b"k", b"v" * 100)]) + build_batch([Record(1, 6, None, b"w")], base_offset=1)


def response(version: int) -> Any:
    cls = messages.response_class(ApiKey.FETCH, version)
    partition = {
        "partition_index": 3,
        "error_code": 0,
        "high_watermark": 2,
        "last_stable_offset": 2,
        "log_start_offset": 0,
        "aborted_transactions": [{"producer_id": 7, "first_offset": 1}],
        "preferred_read_replica": -1,
        "records": BATCHES,
    }
    empty = dict(partition, partition_index=4, error_code=1, aborted_transactions=None, records=None)
    return messages.build(
        cls,
        {
            "throttle_time": 0,
            "error_code": 0,
            "session_id": 0,
            "responses": [{"topic": "t", "partitions": [partition, empty]}, {"topic": "u", "partitions": []}],
        },
    )


def frame_of(payload: Any, correlation_id: int = 9) -> bytes:
    buf = io.BytesIO()
    buf.write(struct.pack(">i", correlation_id))
    if type(payload).__flexible__:
        buf.write(b"\x00")
    entity_writer(type(payload))(buf, payload)
    return buf.getvalue()


@pytest.mark.parametrize("version", range(LO, HI + 1))
def test_agrees_with_kio(version: int) -> None:
    payload = response(version)
    frame = frame_of(payload)
    ours = decode_fetch_response(frame, version)
    theirs = messages.decode_response(type(payload), frame)
    assert set(ours.topics) == {t.topic for t in theirs.responses}
    for topic in theirs.responses:
        for mine, kio_part in zip(ours.topics[topic.topic], topic.partitions, strict=True):
            assert mine.partition == kio_part.partition_index
            assert mine.error_code == kio_part.error_code
            assert mine.high_watermark == kio_part.high_watermark
            assert mine.log_start_offset == getattr(kio_part, "log_start_offset", -1)
            assert (None if mine.records is None else bytes(mine.records)) == kio_part.records
            kio_aborted = kio_part.aborted_transactions
            expected = None if kio_aborted is None else tuple((a.producer_id, a.first_offset) for a in kio_aborted)
            assert mine.aborted == expected


def test_records_are_views_of_the_frame() -> None:
    frame = frame_of(response(HI))
    answer = decode_fetch_response(frame, HI)
    records = answer.topics["t"][0].records
    assert isinstance(records, memoryview)
    assert records.obj is frame
    assert records.nbytes == len(BATCHES)


def test_unknown_tagged_fields_are_skipped() -> None:
    frame = bytearray(frame_of(response(HI)))
    # The top-level tagged-field count is the last byte; replace it with one unknown tag (99, 3 bytes).
    assert frame[-1] == 0
    frame[-1:] = b"\x01" + bytes([99, 3]) + b"xyz"
    answer = decode_fetch_response(bytes(frame), HI)
    assert answer.topics["t"][0].high_watermark == 2


def test_truncated_and_trailing_bytes_raise() -> None:
    frame = frame_of(response(HI))
    with pytest.raises(BrokerConnectionError, match="truncated"):
        decode_fetch_response(frame[:-30], HI)
    with pytest.raises(BrokerConnectionError, match="trailing"):
        decode_fetch_response(frame + b"\x00", HI)
    with pytest.raises(ValueError, match="v4-v12"):
        decode_fetch_response(frame, 13)
