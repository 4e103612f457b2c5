"""Raw Kafka requests over a socket, for tests that send what no well-behaved client would."""

from __future__ import annotations

import io
import socket
import struct
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from tidelog.broker.protocol import messages


def header(api_key: int, version: int, correlation_id: int, flexible: bool, client_id: str = "raw") -> bytes:
    cid = client_id.encode()
    return struct.pack(">hhih", api_key, version, correlation_id, len(cid)) + cid + (b"\x00" if flexible else b"")


def body(api_key: int, version: int, **fields: Any) -> bytes:
    cls = load_request_schema(api_key, version)
    value = messages.build(cls, **fields)
    buf = io.BytesIO()
    entity_writer(cls)(buf, value)
    return buf.getvalue()


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">i", len(payload)) + payload)


def read_frame(sock: socket.socket) -> bytes:
    """One response frame, or b'' if the broker closed the connection."""
    size_raw = _read_exact(sock, 4)
    if not size_raw:
        return b""
    (size,) = struct.unpack(">i", size_raw)
    return _read_exact(sock, size)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            return b""
        out += chunk
    return out


def call(sock: socket.socket, api_key: int, version: int, correlation_id: int = 1, **fields: Any) -> Any:
    """Send a kio-built request, parse the response with kio."""
    req_cls = load_request_schema(api_key, version)
    flexible = bool(req_cls.__flexible__)
    send_frame(sock, header(api_key, version, correlation_id, flexible) + body(api_key, version, **fields))
    frame = read_frame(sock)
    assert frame, "the broker closed the connection"
    assert struct.unpack(">i", frame[:4])[0] == correlation_id
    start = 4 + (1 if flexible and api_key != 18 else 0)
    value, _ = entity_reader(load_response_schema(api_key, version))(frame[start:], 0)
    return value


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def fetch_fields(topic: str, *, offset: int = 0, max_bytes: int = 1 << 20, min_bytes: int = 1) -> dict[str, Any]:
    """A one-partition Fetch request (partition 0, no wait), as fields for ``body``/``call``."""
    return {
        "replica_id": -1,
        "max_wait": 0,
        "min_bytes": min_bytes,
        "max_bytes": max_bytes,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "cluster_id": None,
        "rack_id": "",
        "forgotten_topics_data": [],
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {
                        "partition": 0,
                        "fetch_offset": offset,
                        "current_leader_epoch": -1,
                        "last_fetched_epoch": -1,
                        "log_start_offset": -1,
                        "partition_max_bytes": max_bytes,
                    }
                ],
            }
        ],
    }
