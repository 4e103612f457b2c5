"""The zero-copy fetch path under a slow reader: a response larger than the socket buffers leaves in
pieces (sendfile from writability callbacks), intact, and a pipelined request behind it is answered
after it, in order."""

from __future__ import annotations

import socket
import struct
import time

from confluent_kafka import Producer
from kio.index import load_response_schema
from kio.serial import entity_reader
from logtesting import iter_batches
from rawkafka import body, fetch_fields, header, send_frame
from tidelogbroker import RunningBroker


def _fetch_request(topic: str, max_bytes: int, correlation_id: int) -> bytes:
    return header(1, 12, correlation_id, True) + body(1, 12, **fetch_fields(topic, max_bytes=max_bytes))


def _read_exact_slowly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(min(65536, n - len(out)))
        assert chunk, "connection closed mid-response"
        out += chunk
        time.sleep(0.0005)  # a slow consumer: the broker's socket buffer fills up
    return bytes(out)


def test_large_fetch_to_a_slow_reader_stays_intact_and_ordered(broker: RunningBroker) -> None:
    topic = "slow-reader"
    payloads = [bytes([i % 251]) * 200_000 for i in range(40)]  # ~8 MB
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 1_000_000, "linger.ms": 0})
    for value in payloads:
        producer.produce(topic, value=value, partition=0)
    assert producer.flush(30) == 0
    with socket.create_connection(("127.0.0.1", broker.port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        send_frame(sock, _fetch_request(topic, 16 * 1024 * 1024, correlation_id=1))
        send_frame(
            sock,
            header(3, 12, 2, True)
            + body(3, 12, topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False),
        )
        size = struct.unpack(">i", _read_exact_slowly(sock, 4))[0]
        frame = _read_exact_slowly(sock, size)
        assert struct.unpack(">i", frame[:4])[0] == 1  # the fetch first
        response, _ = entity_reader(load_response_schema(1, 12))(frame[5:], 0)
        records = response.responses[0].partitions[0].records
        values = [r.value for _header, batch in iter_batches(records) for r in batch]
        assert values == payloads  # every byte, in order
        size2 = struct.unpack(">i", _read_exact_slowly(sock, 4))[0]
        assert struct.unpack(">i", _read_exact_slowly(sock, size2)[:4])[0] == 2  # then the metadata
