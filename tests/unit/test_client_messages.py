"""The client's codec layer without a broker: requests at every version, framing, negotiation, batches."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from kio.serial import entity_reader, entity_writer

from tidelog.broker.client import messages
from tidelog.broker.client.batches import iter_batches, next_offset_after, records_from
from tidelog.broker.client.errors import BrokerConnectionError, NoCommonVersionError
from tidelog.broker.client.versions import CLIENT_RANGES, ApiKey, negotiate
from tidelog.broker.protocol import codecs
from tidelog.broker.protocol.errors import CorruptRecordError
from tidelog.broker.protocol.records import Record, build_batch

BATCH = build_batch([Record(0, 1000, b"k", b"v")])

# One description per API, with the fields of the newest version; build() keeps what each version has.
REQUESTS: dict[ApiKey, dict[str, Any]] = {
    ApiKey.API_VERSIONS: {"client_software_name": "tidelog", "client_software_version": "0.1.0"},
    ApiKey.SASL_HANDSHAKE: {"mechanism": "SCRAM-SHA-512"},
    ApiKey.SASL_AUTHENTICATE: {"auth_bytes": b"n,,n=broker,r=nonce"},
    ApiKey.METADATA: {
        "topics": [{"name": "t", "topic_id": None}],
        "allow_auto_topic_creation": False,
        "include_topic_authorized_operations": False,
        "include_cluster_authorized_operations": False,
    },
    ApiKey.PRODUCE: {
        "transactional_id": None,
        "acks": -1,
        "timeout": 1000,
        "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": BATCH}]}],
    },
    ApiKey.FETCH: {
        "replica_id": -1,
        "max_wait": 500,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [{"topic": "t", "partitions": [{"partition": 0, "fetch_offset": 5, "partition_max_bytes": 1024}]}],
        "forgotten_topics_data": [],
        "rack_id": "",
    },
    ApiKey.LIST_OFFSETS: {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [{"name": "t", "partitions": [{"partition_index": 0, "timestamp": -2}]}],
    },
    ApiKey.CREATE_TOPICS: {
        "topics": [
            {
                "name": "t",
                "num_partitions": 3,
                "replication_factor": 1,
                "assignments": [],
                "configs": [{"name": "retention.ms", "value": "1000"}],
            }
        ],
        "timeout": 1000,
        "validate_only": False,
    },
    ApiKey.DELETE_TOPICS: {"topics": [{"name": "t", "topic_id": None}], "topic_names": ["t"], "timeout": 1000},
    ApiKey.CREATE_PARTITIONS: {
        "topics": [{"name": "t", "count": 4, "assignments": None}],
        "timeout": 1000,
        "validate_only": False,
    },
    ApiKey.DESCRIBE_CONFIGS: {
        "resources": [{"resource_type": 2, "resource_name": "t", "configuration_keys": None}],
        "include_synonyms": False,
        "include_documentation": False,
    },
    ApiKey.INCREMENTAL_ALTER_CONFIGS: {
        "resources": [
            {"resource_type": 2, "resource_name": "t", "configs": [{"name": "a", "config_operation": 0, "value": "1"}]}
        ],
        "validate_only": False,
    },
    ApiKey.OFFSET_FOR_LEADER_EPOCH: {
        "replica_id": 1,
        "topics": [{"topic": "t", "partitions": [{"partition": 0, "current_leader_epoch": 3, "leader_epoch": 2}]}],
    },
}

CASES = [(api, v) for api, (lo, hi) in CLIENT_RANGES.items() for v in range(lo, hi + 1)]


@pytest.mark.parametrize(("api", "version"), CASES, ids=[f"{a.name}-v{v}" for a, v in CASES])
def test_every_request_version_builds_and_round_trips(api: ApiKey, version: int) -> None:
    cls = messages.request_class(api, version)
    payload = messages.build(cls, REQUESTS[api])
    frame = messages.encode_request(payload, correlation_id=7, client_id="me")
    (size,) = struct.unpack_from(">i", frame)
    assert size == len(frame) - 4
    header_cls = cls.__header_schema__
    header, used = entity_reader(header_cls)(frame, 4)
    assert (header.request_api_key, header.request_api_version, header.correlation_id) == (api, version, 7)
    assert header.client_id == "me"
    decoded, body_used = entity_reader(cls)(frame, 4 + used)
    assert 4 + used + body_used == len(frame)
    assert decoded == payload


def test_flexible_requests_use_header_v2_and_client_id_stays_int16_string() -> None:
    payload = messages.build(messages.request_class(ApiKey.METADATA, 12), REQUESTS[ApiKey.METADATA])
    frame = messages.encode_request(payload, 1, "abc")
    # size, api key 3, version 12, correlation 1, int16 length 3, "abc", then an empty tagged-field set.
    assert frame[4:18] == struct.pack(">hhih", 3, 12, 1, 3) + b"abc" + b"\x00"
    old = messages.build(messages.request_class(ApiKey.METADATA, 8), REQUESTS[ApiKey.METADATA])
    frame = messages.encode_request(old, 1, "abc")
    assert frame[4:17] == struct.pack(">hhih", 3, 8, 1, 3) + b"abc"
    assert frame[17:21] == struct.pack(">i", 1)  # the topics array follows directly: no tagged fields


def test_api_versions_response_header_is_v0_even_when_flexible() -> None:
    cls = messages.response_class(ApiKey.API_VERSIONS, 3)
    assert cls.__flexible__
    assert messages.response_body_offset(cls, struct.pack(">i", 9) + b"\x00" * 20) == 4
    metadata = messages.response_class(ApiKey.METADATA, 12)
    assert messages.response_body_offset(metadata, struct.pack(">i", 9) + b"\x00" * 20) == 5


def test_decode_rejects_trailing_bytes() -> None:
    cls = messages.response_class(ApiKey.API_VERSIONS, 0)
    frame = struct.pack(">ihi", 1, 0, 0)  # correlation id, error 0, empty array
    assert messages.decode_response(cls, frame).api_keys == ()
    with pytest.raises(BrokerConnectionError, match="parsed 10 of 11 bytes"):
        messages.decode_response(cls, frame + b"\x00")


def test_build_drops_unknown_fields_and_fills_nullable_ones() -> None:
    v1 = messages.build(messages.request_class(ApiKey.DELETE_TOPICS, 1), REQUESTS[ApiKey.DELETE_TOPICS])
    assert v1.topic_names == ("t",)
    meta = messages.build(messages.request_class(ApiKey.METADATA, 12), {"include_topic_authorized_operations": False})
    assert meta.topics is None
    with pytest.raises(TypeError):
        messages.build(messages.request_class(ApiKey.PRODUCE, 9), {"acks": 1})


def test_millis_round_trips_kio_time_types() -> None:
    payload = messages.build(messages.request_class(ApiKey.PRODUCE, 11), REQUESTS[ApiKey.PRODUCE])
    assert messages.millis(payload.timeout) == 1000
    assert messages.millis(None) == -1


def test_negotiation_takes_the_lower_max_and_checks_minima() -> None:
    assert negotiate(ApiKey.FETCH, {1: (4, 18)}) == 12
    assert negotiate(ApiKey.FETCH, {1: (0, 7)}) == 7
    with pytest.raises(NoCommonVersionError, match="FETCH"):
        negotiate(ApiKey.FETCH, {1: (0, 3)})
    with pytest.raises(NoCommonVersionError, match="does not advertise"):
        negotiate(ApiKey.FETCH, {})
    with pytest.raises(NoCommonVersionError) as info:
        negotiate(ApiKey.PRODUCE, {0: (13, 13)})
    assert info.value.error_code == 35


def _batch(base: int, count: int, compression: int = codecs.NONE) -> bytes:
    records = [Record(base + i, 1000 + i, f"k{base + i}".encode(), f"v{base + i}".encode()) for i in range(count)]
    return build_batch(records, base_offset=base, compression=compression)


@pytest.mark.parametrize("compression", sorted(codecs.NAMES))
def test_records_from_skips_records_below_the_fetch_offset(compression: int) -> None:
    data = _batch(10, 5, compression) + _batch(15, 5, compression)
    records = list(records_from(data, 12))
    assert [r.offset for r in records] == list(range(12, 20))
    assert records[0].value == b"v12"
    assert next_offset_after(data, 12) == 20


def test_partial_trailing_batch_is_ignored() -> None:
    whole = _batch(0, 3)
    data = whole + _batch(3, 3)[:-7]
    assert [h.base_offset for h, _ in iter_batches(data)] == [0]
    assert [r.offset for r in records_from(data, 0)] == [0, 1, 2]
    assert next_offset_after(data, 0) == 3
    assert list(iter_batches(whole[:11])) == []  # not even the length field


def test_batches_are_views_not_copies() -> None:
    data = bytearray(_batch(0, 2) + _batch(2, 2))
    (_, first), (_, second) = iter_batches(data)
    assert isinstance(first, memoryview)
    assert first.obj is data
    assert second.obj is data
    assert first.nbytes + second.nbytes == len(data)


def test_corrupt_batch_raises() -> None:
    data = bytearray(_batch(0, 2))
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC"):
        list(iter_batches(data))


def test_unknown_tagged_field_in_a_kio_parsed_response_is_a_connection_error() -> None:
    # kio 0.6.5 raises KeyError on unknown tags (KIP-482 says skip); the client reports it as a broken
    # answer instead of crashing. Fetch answers, the big ones, go through fetchwire, which skips tags.
    cls = messages.response_class(ApiKey.METADATA, 12)
    payload = messages.build(cls, {"throttle_time": 0, "brokers": [], "cluster_id": "c", "controller_id": 1})
    buf = io.BytesIO()
    buf.write(struct.pack(">i", 1) + b"\x00")
    entity_writer(cls)(buf, payload)
    frame = buf.getvalue()[:-1] + bytes([1, 99, 3]) + b"xyz"
    with pytest.raises(BrokerConnectionError, match="Unknown tagged field tag: 99"):
        messages.decode_response(cls, frame)
