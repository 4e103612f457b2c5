"""BrokerConnection against a scripted fake broker: handshake, pipelining, order, timeouts, failures."""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from kio.serial import entity_writer

from tidelog.broker.client import messages
from tidelog.broker.client.connection import BrokerConnection
from tidelog.broker.client.errors import BrokerConnectionError, RequestTimeoutError
from tidelog.broker.client.versions import ApiKey

METADATA = {"topics": [], "allow_auto_topic_creation": False, "include_topic_authorized_operations": False}
Handler = Callable[[list[tuple[int, int, int]], asyncio.StreamWriter], Awaitable[None]]


def _frame(correlation_id: int, payload: Any, *, header_v1: bool) -> bytes:
    buf = io.BytesIO()
    buf.write(struct.pack(">i", correlation_id))
    if header_v1:
        buf.write(b"\x00")
    entity_writer(type(payload))(buf, payload)
    body = buf.getvalue()
    return struct.pack(">i", len(body)) + body


def api_versions_answer(correlation_id: int, version: int, ranges: dict[int, tuple[int, int]]) -> bytes:
    cls = messages.response_class(ApiKey.API_VERSIONS, version)
    keys = [{"api_key": k, "min_version": lo, "max_version": hi} for k, (lo, hi) in ranges.items()]
    payload = messages.build(cls, {"error_code": 0, "api_keys": keys, "throttle_time": 0})
    return _frame(correlation_id, payload, header_v1=False)


def metadata_answer(correlation_id: int, version: int) -> bytes:
    cls = messages.response_class(ApiKey.METADATA, version)
    payload = messages.build(
        cls,
        {"throttle_time": 0, "brokers": [], "cluster_id": "c", "controller_id": 1, "topics": []},
    )
    return _frame(correlation_id, payload, header_v1=cls.__flexible__)


RANGES = {int(ApiKey.API_VERSIONS): (0, 4), int(ApiKey.METADATA): (0, 12)}


async def _read_request(reader: asyncio.StreamReader) -> tuple[int, int, int]:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    body = await reader.readexactly(size)
    api, version, correlation_id = struct.unpack_from(">hhi", body)
    return api, version, correlation_id


@pytest_asyncio.fixture
async def fake_broker() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[str, int]]]]:
    """Start a fake broker that answers ApiVersions, then hands every other request to a handler."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> tuple[str, int]:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                api, version, cid = await _read_request(reader)
                assert api == ApiKey.API_VERSIONS
                writer.write(api_versions_answer(cid, version, RANGES))
                await handler([], writer)  # give the handler the writer; it reads through the closure
                while True:
                    await handler([await _read_request(reader)], writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        servers.append(server)
        return "127.0.0.1", server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_pipelined_requests_are_answered_in_order(fake_broker: Any) -> None:
    held: list[tuple[int, int, int]] = []

    async def handler(requests: list[tuple[int, int, int]], writer: asyncio.StreamWriter) -> None:
        held.extend(requests)
        if len(held) == 20:  # all twenty arrived before any answer: the client pipelines
            for _api, version, cid in held:
                writer.write(metadata_answer(cid, version))
            await writer.drain()

    host, port = await fake_broker(handler)
    conn = await BrokerConnection.open(host, port)
    assert conn.version(ApiKey.METADATA) == 12
    answers = await asyncio.gather(*(conn.request(ApiKey.METADATA, METADATA) for _ in range(20)))
    assert [a.cluster_id for a in answers] == ["c"] * 20
    assert len({cid for _, _, cid in held}) == 20
    await conn.close()


@pytest.mark.asyncio
async def test_wrong_correlation_id_fails_the_connection(fake_broker: Any) -> None:
    async def handler(requests: list[tuple[int, int, int]], writer: asyncio.StreamWriter) -> None:
        for _api, version, cid in requests:
            writer.write(metadata_answer(cid + 1000, version))

    conn = await BrokerConnection.open(*(await fake_broker(handler)))
    with pytest.raises(BrokerConnectionError, match="correlation id"):
        await conn.request(ApiKey.METADATA, METADATA)
    assert conn.closed
    with pytest.raises(BrokerConnectionError, match="closed"):
        await conn.request(ApiKey.METADATA, METADATA)
    await conn.close()


@pytest.mark.asyncio
async def test_silent_broker_times_out(fake_broker: Any) -> None:
    async def handler(requests: list[tuple[int, int, int]], writer: asyncio.StreamWriter) -> None:
        pass

    conn = await BrokerConnection.open(*(await fake_broker(handler)), request_timeout=0.2)
    with pytest.raises(RequestTimeoutError, match=r"METADATA v12 .* no answer within 0.2s"):
        await conn.request(ApiKey.METADATA, METADATA)
    assert conn.closed
    await conn.close()


@pytest.mark.asyncio
async def test_broker_closing_fails_pending_requests(fake_broker: Any) -> None:
    async def handler(requests: list[tuple[int, int, int]], writer: asyncio.StreamWriter) -> None:
        if requests:
            writer.close()

    conn = await BrokerConnection.open(*(await fake_broker(handler)))
    with pytest.raises(BrokerConnectionError, match="closed the connection"):
        await conn.request(ApiKey.METADATA, METADATA)
    await conn.close()


@pytest.mark.asyncio
async def test_api_versions_falls_back_after_unsupported_version() -> None:
    seen: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _api, version, cid = await _read_request(reader)
        seen.append(version)
        # KIP-511: an unknown ApiVersions version is answered in v0 format with error 35 and the range.
        body = struct.pack(">ihi", cid, 35, 1) + struct.pack(">hhh", 18, 0, 2)
        writer.write(struct.pack(">i", len(body)) + body)
        _api, version, cid = await _read_request(reader)
        seen.append(version)
        writer.write(api_versions_answer(cid, version, {18: (0, 2), 3: (0, 9)}))
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    conn = await BrokerConnection.open("127.0.0.1", server.sockets[0].getsockname()[1])
    assert seen == [3, 2]
    assert conn.version(ApiKey.METADATA) == 9
    await conn.close()
    server.close()
    await server.wait_closed()


@pytest.mark.asyncio
async def test_unreachable_broker_is_a_connection_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(BrokerConnectionError, match=f"cannot connect to 127.0.0.1:{port}"):
        await BrokerConnection.open("127.0.0.1", port)
