"""One TCP connection to one broker: framing, correlation ids, pipelining, timeouts, ApiVersions.

Requests may be pipelined: each is written at once and a single reader task matches responses to
requests in order (Kafka answers in request order per connection), checking correlation ids. A
request without an answer in time fails with ``RequestTimeoutError`` and closes the connection
(the stream can no longer be trusted to line up); a broken connection fails every pending request
with ``BrokerConnectionError``. ``open`` performs the ApiVersions handshake first, then
:meth:`BrokerConnection.version` gives the negotiated version per API. On a SASL listener the
caller passes ``authenticate``, run right after ApiVersions (a SASL mechanism's exchange, e.g.
``tidelog.broker.security.sasl_client``: this layer knows no mechanism).

asyncio streams are used: the client is not the broker's hot path. ``drain()`` after each write is
the backpressure. Neighbours: ``messages`` (encoding), ``cluster`` (one connection per broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl as ssl_
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tidelog.broker.client import messages
from tidelog.broker.client.errors import BrokerConnectionError, RequestTimeoutError, raise_for_code
from tidelog.broker.client.versions import CLIENT_RANGES, ApiKey, negotiate

_INT32 = struct.Struct(">i")
_INT16 = struct.Struct(">h")
MAX_RESPONSE_BYTES = 1 << 30
SOFTWARE_NAME = "tidelog"
SOFTWARE_VERSION = "0.1.0"


Authenticator = Callable[["BrokerConnection"], Awaitable[None]]


@dataclass
class _Pending:
    """A request written to the socket and not answered yet."""

    correlation_id: int
    future: asyncio.Future[bytes]


class BrokerConnection:
    """A connection to ``host:port``. Use :meth:`open` (connects and negotiates versions)."""

    def __init__(
        self,
        host: str,
        port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        client_id: str | None,
        request_timeout: float,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.request_timeout = request_timeout
        self.api_versions: dict[int, tuple[int, int]] = {}
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: deque[_Pending] = deque()
        self._closed: BaseException | None = None
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        client_id: str | None = "tidelog",
        connect_timeout: float = 10.0,
        request_timeout: float = 30.0,
        ssl: ssl_.SSLContext | None = None,
        authenticate: Authenticator | None = None,
    ) -> BrokerConnection:
        """Connect to ``host:port`` (over TLS with ``ssl``), negotiate API versions, then
        ``authenticate`` (SASL) if given; the connection is closed if any of it fails."""
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
        except TimeoutError as exc:
            raise RequestTimeoutError(f"connecting to {host}:{port} took over {connect_timeout:g}s") from exc
        except ssl_.SSLError as exc:
            raise BrokerConnectionError(f"TLS with {host}:{port} failed: {exc.reason or exc}") from exc
        except OSError as exc:
            raise BrokerConnectionError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
        conn = cls(host, port, reader, writer, client_id=client_id, request_timeout=request_timeout)
        try:
            await conn._handshake()
            if authenticate is not None:
                await authenticate(conn)
        except BaseException:
            await conn.close()
            raise
        return conn

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def version(self, api: ApiKey) -> int:
        """The negotiated version of ``api``: min(our max, broker max), checked against both minima."""
        return negotiate(api, self.api_versions)

    async def _handshake(self) -> None:
        """ApiVersions at our highest version; on UNSUPPORTED_VERSION the broker answers in v0 format
        with its range, and we retry at the highest version we share."""
        version = CLIENT_RANGES[ApiKey.API_VERSIONS][1]
        fields = {"client_software_name": SOFTWARE_NAME, "client_software_version": SOFTWARE_VERSION}
        for _attempt in range(2):
            payload = messages.build(messages.request_class(ApiKey.API_VERSIONS, version), fields)
            frame = await self.request_frame(ApiKey.API_VERSIONS, payload)
            # The ApiVersions response header is always v0 (4 bytes); the error code leads the body.
            (error_code,) = _INT16.unpack_from(frame, 4)
            if error_code == 35:
                answer = messages.decode_response(messages.response_class(ApiKey.API_VERSIONS, 0), frame)
                theirs = {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in answer.api_keys}
                version = negotiate(ApiKey.API_VERSIONS, theirs)
                continue
            answer = messages.decode_response(messages.response_class(ApiKey.API_VERSIONS, version), frame)
            raise_for_code(int(answer.error_code), f"ApiVersions from {self.address}")
            self.api_versions = {int(k.api_key): (int(k.min_version), int(k.max_version)) for k in answer.api_keys}
            return
        raise BrokerConnectionError(f"{self.address}: ApiVersions negotiation did not converge")

    async def request(self, api: ApiKey, fields: Mapping[str, Any], *, timeout_s: float | None = None) -> Any:
        """Send ``api`` built from ``fields`` at the negotiated version; return the parsed response."""
        version = self.version(api)
        payload = messages.build(messages.request_class(api, version), fields)
        frame = await self.request_frame(api, payload, timeout_s=timeout_s)
        return messages.decode_response(messages.response_class(api, version), frame)

    async def send_only(self, api: ApiKey, fields: Mapping[str, Any]) -> None:
        """Send a request that gets no response (Produce with acks=0)."""
        payload = messages.build(messages.request_class(api, self.version(api)), fields)
        self._ensure_open()
        self._writer.write(messages.encode_request(payload, next(self._ids) & 0x7FFFFFFF, self.client_id))
        await self._drain()

    async def request_frame(self, api: ApiKey, payload: Any, *, timeout_s: float | None = None) -> bytes:
        """Send the kio ``payload``; return the raw response frame (size prefix removed, header kept)."""
        self._ensure_open()
        correlation_id = next(self._ids) & 0x7FFFFFFF
        version = type(payload).__version__
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(correlation_id, future))
        self._writer.write(messages.encode_request(payload, correlation_id, self.client_id))
        await self._drain()
        limit = self.request_timeout if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(limit):
                return await asyncio.shield(future)
        except TimeoutError as exc:
            error = RequestTimeoutError(f"{api.name} v{version} to {self.address}: no answer within {limit:g}s")
            self._fail(error)
            raise error from exc

    def _ensure_open(self) -> None:
        if self._closed is not None:
            raise BrokerConnectionError(f"connection to {self.address} is closed: {self._closed}")

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:
            error = BrokerConnectionError(f"writing to {self.address} failed: {exc}")
            self._fail(error)
            raise error from exc

    async def _read_loop(self) -> None:
        try:
            while True:
                head = await self._reader.readexactly(4)
                (size,) = _INT32.unpack(head)
                if size < 4 or size > MAX_RESPONSE_BYTES:
                    raise BrokerConnectionError(f"{self.address} sent a frame of {size} bytes")
                frame = await self._reader.readexactly(size)
                if not self._pending:
                    raise BrokerConnectionError(f"{self.address} sent a response nobody asked for")
                pending = self._pending[0]
                got = messages.correlation_id_of(frame)
                if got != pending.correlation_id:
                    raise BrokerConnectionError(
                        f"{self.address}: correlation id {got} where {pending.correlation_id} was expected"
                    )
                self._pending.popleft()
                if not pending.future.done():
                    pending.future.set_result(frame)
        except asyncio.IncompleteReadError:
            self._fail(BrokerConnectionError(f"{self.address} closed the connection"))
        except BrokerConnectionError as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(BrokerConnectionError(f"reading from {self.address} failed: {exc}"))
        except Exception as exc:  # a bug here must fail the callers, not leave them waiting
            self._fail(BrokerConnectionError(f"reading from {self.address} failed: {exc!r}"))

    def _fail(self, error: BaseException) -> None:
        """Close the connection and fail every pending request with ``error``."""
        if self._closed is None:
            self._closed = error
        while self._pending:
            pending = self._pending.popleft()
            if not pending.future.done():
                pending.future.set_exception(error)
                pending.future.exception()  # retrieved here: nobody may be awaiting it any more
        self._writer.close()
        if asyncio.current_task() is not self._reader_task:
            self._reader_task.cancel()

    async def close(self) -> None:
        """Close the connection; pending requests fail with ``BrokerConnectionError``."""
        self._fail(BrokerConnectionError(f"connection to {self.address} closed by the client"))
        await asyncio.wait([self._reader_task])
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
