"""Hypothesis fuzzing of request decoding and dispatch, in process: any bytes either get a response
or close the connection; no exception escapes, and the broker keeps serving."""

from __future__ import annotations

import asyncio
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inprocess import feed, new_connection
from rawkafka import body, header

from tidelog.broker.server.connection import KafkaConnection

VALID = [
    header(18, 3, 1, True) + body(18, 3, client_software_name="fuzz", client_software_version="1"),
    header(3, 12, 2, True)
    + body(3, 12, topics=None, allow_auto_topic_creation=True, include_topic_authorized_operations=False),
    header(3, 1, 3, False) + body(3, 1, topics=[{"name": "fuzzed"}]),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(VALID),
    cut=st.integers(min_value=0, max_value=200),
    flips=st.lists(
        st.tuples(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=255)), max_size=6
    ),
    junk=st.binary(max_size=64),
)
def test_mangled_requests_never_escape(base: bytes, cut: int, flips: list[tuple[int, int]], junk: bytes) -> None:
    data = bytearray(base[: max(cut, 8)] if cut < len(base) else base + junk)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    with tempfile.TemporaryDirectory() as tmp:
        conn, transport, logs = new_connection(Path(tmp))
        try:
            asyncio.run(_run(conn, bytes(data)))
            assert transport.aborted or transport.written or len(data) < 8
        finally:
            logs.close_sync()


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(min_size=0, max_size=300))
def test_random_frames_never_escape(frame: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conn, transport, logs = new_connection(Path(tmp))
        try:
            asyncio.run(_run(conn, frame))
            if not transport.aborted and len(frame) >= 8 and frame[:2] != b"\x00\x00":
                assert transport.written  # answered (a Produce may legitimately be acks=0: no answer)
        finally:
            logs.close_sync()


async def _run(conn: KafkaConnection, payload: bytes) -> None:
    feed(conn, struct.pack(">i", len(payload)) + payload)
    await asyncio.sleep(0)


def test_valid_requests_are_answered_in_order() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conn, transport, logs = new_connection(Path(tmp))
        try:
            asyncio.run(_run_all(conn, VALID))
            out = bytes(transport.written)
            ids = []
            pos = 0
            while pos < len(out):
                (size,) = struct.unpack(">i", out[pos : pos + 4])
                ids.append(struct.unpack(">i", out[pos + 4 : pos + 8])[0])
                pos += 4 + size
            assert ids == [1, 2, 3]
            assert not transport.aborted
        finally:
            logs.close_sync()


async def _run_all(conn: KafkaConnection, frames: list[bytes]) -> None:
    feed(conn, b"".join(struct.pack(">i", len(f)) + f for f in frames))
    await asyncio.sleep(0)
