"""Bad input gets Kafka's error code or a closed connection, one clear log line, and the broker
and its other clients carry on with nothing stored lost."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from logtesting import fresh_batch as client_batch
from rawkafka import call, closed_by_peer, fetch_fields, header, read_frame, send_frame
from tidelogbroker import RunningBroker, tidelog_broker

from tidelog.broker.protocol import batch as rb


@pytest.fixture
def conn(broker: RunningBroker) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        yield sock


def produce_v9(sock: socket.socket, topic: str, records: bytes, acks: int = -1) -> tuple[int, str | None]:
    response = call(
        sock,
        0,
        9,
        acks=acks,
        timeout=5000,
        transactional_id=None,
        topic_data=[{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
    )
    partition = response.responses[0].partition_responses[0]
    return int(partition.error_code.value), partition.error_message


def test_unknown_api_versions_version_gets_a_v0_answer_with_error_35(conn: socket.socket) -> None:
    send_frame(conn, header(18, 99, 7, flexible=True) + b"\x00\x00\x00")
    frame = read_frame(conn)
    correlation_id, error_code, count = struct.unpack(">ihi", frame[:10])
    assert (correlation_id, error_code) == (7, 35)
    ranges = {struct.unpack(">hhh", frame[10 + 6 * i : 16 + 6 * i])[0] for i in range(count)}
    assert {0, 1, 3, 18} <= ranges


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (header(999, 0, 1, flexible=False), "unknown API key"),
        (header(3, 99, 1, flexible=False), "unsupported Metadata version"),
        (header(3, 12, 1, flexible=True) + b"\x05", "truncated Metadata body"),
        (b"\x00\x03\x00", "frame shorter than a header"),
    ],
)
def test_malformed_requests_close_the_connection_and_others_carry_on(
    broker: RunningBroker, conn: socket.socket, payload: bytes, why: str
) -> None:
    send_frame(conn, payload)
    assert closed_by_peer(conn), why
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as other:
        assert call(
            other, 3, 12, topics=[], allow_auto_topic_creation=False, include_topic_authorized_operations=False
        ).brokers
    assert broker.alive()


def test_oversize_and_negative_frames_are_refused(broker: RunningBroker) -> None:
    for size in (200 * 1024 * 1024, -5, 3):
        with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
            sock.sendall(struct.pack(">i", size) + b"\x00" * 16)
            assert closed_by_peer(sock), size
    assert "socket.request.max.bytes" in broker.log_text()


def test_record_errors_carry_kafka_codes_and_lose_nothing(broker: RunningBroker, conn: socket.socket) -> None:
    topic = "bad-input-records"
    assert produce_v9(conn, topic, bytes(client_batch([b"good-1"]))) == (0, None)
    corrupt = client_batch([b"x"])
    corrupt[-1] ^= 0xFF
    code, message = produce_v9(conn, topic, bytes(corrupt))
    assert code == 2
    assert message is not None
    assert "CRC" in message
    old_magic = client_batch([b"x"])
    old_magic[rb.MAGIC_OFFSET] = 1
    assert produce_v9(conn, topic, bytes(old_magic))[0] == 43
    assert produce_v9(conn, topic, bytes(client_batch([b"x"]))[:40])[0] == 2
    assert produce_v9(conn, topic, bytes(client_batch([b"y" * 1_100_000])))[0] == 10  # > max.message.bytes
    assert produce_v9(conn, topic, bytes(client_batch([b"good-2"])))[0] == 0
    fetched = call(conn, 1, 12, **fetch_fields(topic))
    data = fetched.responses[0].partitions[0].records
    assert b"good-1" in data
    assert b"good-2" in data
    assert fetched.responses[0].partitions[0].high_watermark == 2


def test_produce_v2_is_unsupported_and_zstd_needs_v7(conn: socket.socket) -> None:
    # Produce v2 (hand-encoded: kio models only v3+): acks, timeout, one topic, one partition, records
    records = bytes(client_batch([b"old"]))
    v2 = (
        struct.pack(">hi", 1, 5000)
        + struct.pack(">i", 1)
        + struct.pack(">h", 3)
        + b"old"
        + struct.pack(">i", 1)
        + struct.pack(">ii", 0, len(records))
        + records
    )
    send_frame(conn, header(0, 2, 11, flexible=False) + v2)
    frame = read_frame(conn)
    assert struct.unpack(">i", frame[:4])[0] == 11
    assert struct.unpack(">h", frame[4 + 4 + 2 + 3 + 4 + 4 : 4 + 4 + 2 + 3 + 4 + 4 + 2])[0] == 35
    zstd = call(
        conn,
        0,
        6,
        acks=1,
        timeout=5000,
        transactional_id=None,
        topic_data=[
            {
                "name": "zstd-old",
                "partition_data": [{"index": 0, "records": bytes(client_batch([b"z" * 1000], codec=4))}],
            }
        ],
    )
    assert int(zstd.responses[0].partition_responses[0].error_code.value) == 76


def test_invalid_topic_names_are_refused(conn: socket.socket) -> None:
    names = ["a" * 250, "..", "with space", "slash/name"]
    response = call(
        conn,
        19,
        7,
        timeout=5000,
        validate_only=False,
        topics=[
            {"name": n, "num_partitions": 1, "replication_factor": 1, "assignments": [], "configs": []} for n in names
        ],
    )
    assert {t.name: int(t.error_code.value) for t in response.topics} == dict.fromkeys(names, 17)


def test_unknown_topic_with_auto_create_off(tmp_path: Path) -> None:
    with (
        tidelog_broker(tmp_path, "--set", "auto.create.topics.enable=false") as broker,
        socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock,
    ):
        metadata = call(
            sock,
            3,
            12,
            topics=[{"name": "nope", "topic_id": None}],
            allow_auto_topic_creation=True,
            include_topic_authorized_operations=False,
        )
        assert int(metadata.topics[0].error_code.value) == 3
        assert produce_v9(sock, "nope", bytes(client_batch([b"x"])))[0] == 3
