"""One client connection: framing (int32 size prefix), dispatch, responses in request order.

A ``BufferedProtocol``: small frames are parsed out of a reused 64 KiB buffer; a large frame is
received straight into a buffer of its exact size, so record data is never copied before the log
patches its offsets in place. Every complete frame of a wake-up is dispatched, then all finished
responses are written together. Slow handlers (long-polling fetches) finish later; responses still
leave in request order. Record data leaves through ``Sender`` (``os.sendfile`` while the socket has
room, a copy otherwise). Backpressure: reading pauses while the transport's write buffer is above its
high-water mark or too many requests are in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
import typing
from collections import deque
from collections.abc import Callable
from typing import Any

from tidelog.broker.api import api_versions, registry, sasl_api
from tidelog.broker.api.context import BrokerContext, Outcome, Reply
from tidelog.broker.log.files import FileRegion
from tidelog.broker.protocol import frames, messages
from tidelog.broker.protocol.errors import KafkaError
from tidelog.broker.protocol.wire import I32
from tidelog.broker.security.auth_limiter import FailedAuthLimiter
from tidelog.broker.security.sasl import (
    SASL_AUTHENTICATE,
    SASL_AUTHENTICATION_FAILED,
    SASL_HANDSHAKE,
    Answer,
    SaslSession,
)
from tidelog.broker.server import tls
from tidelog.broker.server.sender import Part, Sender

log = logging.getLogger(__name__)
SASL_KEYS = (SASL_HANDSHAKE, SASL_AUTHENTICATE)

SMALL = 64 * 1024
MAX_IN_FLIGHT = 64
BACKLOG_HIGH = 8 * 1024 * 1024  # stop reading requests while this much response data waits


class _Slot:
    """A request awaiting its response; ``done`` once ``reply`` is set (None: send nothing)."""

    __slots__ = ("api", "correlation_id", "done", "flexible_header", "reply", "started")

    def __init__(self, correlation_id: int, flexible_header: bool, api: tuple[int, int]) -> None:
        self.correlation_id = correlation_id
        self.flexible_header = flexible_header
        self.api = api
        self.reply: Reply | None = None
        self.done = False
        self.started = time.perf_counter()


class KafkaConnection(asyncio.BufferedProtocol):
    def __init__(
        self,
        ctx: BrokerContext,
        max_request_bytes: int,
        on_close: Callable[[KafkaConnection], None],
        observe: Callable[[str, Any], None],
        zero_copy: bool = True,
        sasl: SaslSession | None = None,
        failed_auth_delay_s: float = 0.1,
        auth_limiter: FailedAuthLimiter | None = None,
    ) -> None:
        self.ctx = ctx
        self.max_request_bytes = max_request_bytes
        self.on_close = on_close
        self.observe = observe
        self.transport: asyncio.Transport | None = None
        self.zero_copy = zero_copy
        self.sasl = sasl  # a SASL listener's authentication state (None elsewhere)
        self.failed_auth_delay_s = failed_auth_delay_s
        self.auth_limiter = auth_limiter
        self._close_after_flush = False
        self.sender: Sender | None = None
        self.peer = "?"
        self.principal = "User:ANONYMOUS"  # the client's identity (its certificate's subject on TLS)
        self._buf = bytearray(SMALL)
        self._len = 0
        self._big: bytearray | None = None  # a large frame being received in place
        self._big_len = 0
        self._pending: deque[_Slot] = deque()
        self._paused_writing = False
        self._paused_reading = False
        self._closing = False
        self.last_active = time.monotonic()

    # -- transport callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport = self.transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if transport.get_extra_info("sslcontext") is not None:
            self.principal = tls.principal(transport.get_extra_info("peercert"))
            log.debug("TLS connection from %s as %s", self.peer, self.principal)
        # This connection's own context: the handlers authorize its principal from its address.
        self.ctx = dataclasses.replace(self.ctx, principal=self.principal, client_host=peer[0] if peer else "")
        transport.set_write_buffer_limits(high=8 * 1024 * 1024)
        self.sender = Sender(
            self.transport, self.zero_copy, self._update_reading, lambda s, c: self.observe("sent", (s, c))
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self.sender is not None:
            self.sender.close()
        for slot in self._pending:
            if slot.reply is not None:
                _release(slot.reply)
        self._pending.clear()
        self.on_close(self)

    def pause_writing(self) -> None:
        self._paused_writing = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._paused_writing = False
        self._update_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            return memoryview(self._big)[self._big_len :]
        if self._len == len(self._buf):
            self._buf.extend(bytes(len(self._buf)))
        return memoryview(self._buf)[self._len :]

    def buffer_updated(self, nbytes: int) -> None:
        self.last_active = time.monotonic()
        if self._big is not None:
            self._big_len += nbytes
            if self._big_len == len(self._big):
                frame, self._big = self._big, None
                self._dispatch(memoryview(frame))
            self._flush()
            return
        self._len += nbytes
        self._parse()
        self._flush()

    def eof_received(self) -> bool | None:
        return False

    # -- framing ---------------------------------------------------------------------------------

    def _parse(self) -> None:
        buf, pos, end = self._buf, 0, self._len
        while end - pos >= 4 and not self._closing:
            size = int.from_bytes(buf[pos : pos + 4], "big", signed=True)
            if size < 8 or size > self.max_request_bytes:
                log.warning(
                    "closing %s: request size %d outside [8, socket.request.max.bytes=%d]",
                    self.peer,
                    size,
                    self.max_request_bytes,
                )
                self._abort()
                return
            if end - pos - 4 >= size:
                self._dispatch(memoryview(bytearray(buf[pos + 4 : pos + 4 + size])))
                pos += 4 + size
                continue
            if size > SMALL:  # receive the rest of this frame in place, in a buffer of its own
                self._big = bytearray(size)
                have = end - pos - 4
                self._big[:have] = buf[pos + 4 : end]
                self._big_len = have
                pos = end
            break
        if pos:
            remaining = end - pos
            buf[:remaining] = buf[pos:end]
            self._len = remaining
            if len(buf) > SMALL and remaining <= SMALL:
                del buf[SMALL:]

    def _abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    # -- dispatch --------------------------------------------------------------------------------

    def _dispatch(self, frame: memoryview) -> None:
        try:
            api_key, version, correlation_id = frames.peek_api(frame)
        except KafkaError as exc:
            log.warning("closing %s: %s", self.peer, exc)
            self._abort()
            return
        if api_key == frames.API_VERSIONS_KEY and not registry.supported(api_key, version):
            slot = _Slot(correlation_id, False, (api_key, version))
            slot.reply, slot.done = Reply.of(api_versions.unsupported_version_body()), True
            self._pending.append(slot)
            return
        if self.sasl is not None and (not self.sasl.allows(api_key) or api_key in SASL_KEYS):
            self._sasl_request(api_key, version, correlation_id, frame)
            return
        spec = registry.APIS.get(api_key)
        if spec is None or not registry.supported(api_key, version):
            what = f"API key {api_key}" if spec is None else f"{spec.name} v{version}"
            log.warning("closing %s: unsupported %s (correlation id %d)", self.peer, what, correlation_id)
            self.observe("unsupported", (api_key, version))
            self._abort()
            return
        flexible = frames.is_flexible(api_key, version)
        try:
            header, body_start = frames.read_request_header(frame, flexible)
            outcome = spec.handler(self.ctx, header, frame[body_start:])
        except KafkaError as exc:
            log.warning(
                "closing %s: bad %s v%d request: %s (first bytes %s)",
                self.peer,
                spec.name,
                version,
                exc,
                bytes(frame[:64]).hex(),
            )
            self.observe("error", (api_key, exc.error_code))
            self._abort()
            return
        except Exception:
            log.exception("closing %s: %s v%d handler failed", self.peer, spec.name, version)
            self._abort()
            return
        slot = _Slot(correlation_id, flexible and api_key != frames.API_VERSIONS_KEY, (api_key, version))
        self._pending.append(slot)
        if asyncio.iscoroutine(outcome):
            outcome = asyncio.ensure_future(outcome)
        if isinstance(outcome, asyncio.Future):
            outcome.add_done_callback(functools.partial(self._finished, slot))
            self._update_reading()
        else:
            slot.reply, slot.done = typing.cast(Outcome, outcome), True

    def _sasl_request(self, api_key: int, version: int, correlation_id: int, frame: memoryview) -> None:
        """SASL on this connection: the handshake and the mechanism's rounds; anything else before
        authentication closes the connection (as Kafka does)."""
        assert self.sasl is not None
        if api_key not in SASL_KEYS or not registry.supported(api_key, version):
            log.warning("closing %s: API key %d v%d before SASL authentication", self.peer, api_key, version)
            self.observe("error", (api_key, sasl_api.ILLEGAL_SASL_STATE))
            self._abort()
            return
        try:
            _header, body_start = frames.read_request_header(frame, frames.is_flexible(api_key, version))
            request = messages.decode_request(api_key, version, frame[body_start:])
        except KafkaError as exc:
            log.warning("closing %s: bad SASL request: %s", self.peer, exc)
            self._abort()
            return
        slot = _Slot(correlation_id, frames.is_flexible(api_key, version), (api_key, version))
        self._pending.append(slot)
        if api_key == SASL_HANDSHAKE:
            code, mechanisms = self.sasl.handshake(str(request.mechanism))
            slot.reply, slot.done = sasl_api.handshake_reply(version, code, mechanisms), True
            return
        fut = asyncio.ensure_future(self._sasl_authenticate(version, bytes(request.auth_bytes)))
        fut.add_done_callback(functools.partial(self._finished, slot))
        self._update_reading()

    async def _sasl_authenticate(self, version: int, token: bytes) -> Outcome:
        assert self.sasl is not None
        address, limiter = self.ctx.client_host, self.auth_limiter
        wait = limiter.blocked_for(address) if limiter is not None else 0.0
        if limiter is not None and wait > 0:
            if limiter.first_refusal(address):
                log.warning("refusing SASL authentication from %s for %.0f s: %d failed attempts within a minute",
                            address, wait, limiter.limit)  # fmt: skip
            answer = Answer(SASL_AUTHENTICATION_FAILED, "too many failed authentications from this address; "
                            "try again later", failed=True)  # fmt: skip
        else:
            answer = await self.sasl.authenticate(token)
            if answer.failed:
                log.warning("authentication failed: user %s, %s, from %s (%s)", self.sasl.user or "?",
                            self.sasl.mechanism, self.peer, answer.message)  # fmt: skip
                if limiter is not None:
                    limiter.failed(address)
        if answer.failed:
            self.observe("error", (SASL_AUTHENTICATE, answer.error_code))
            await asyncio.sleep(self.failed_auth_delay_s)  # connection.failed.authentication.delay.ms
            self._close_after_flush = True
        elif self.sasl.authenticated:
            self.principal = self.ctx.principal = self.sasl.principal
            log.debug("%s authenticated as %s (%s)", self.peer, self.principal, self.sasl.mechanism)
        return sasl_api.authenticate_reply(version, answer.error_code, answer.message, answer.auth_bytes)

    def _finished(self, slot: _Slot, fut: asyncio.Future[Outcome]) -> None:
        if fut.cancelled():
            slot.reply = None
        elif fut.exception() is not None:
            log.error("closing %s: API %d v%d failed: %r", self.peer, slot.api[0], slot.api[1], fut.exception())
            self._abort()
            return
        else:
            slot.reply = fut.result()
        slot.done = True
        if self._closing:
            if slot.reply is not None:
                _release(slot.reply)
            return
        self._flush()

    # -- responses -------------------------------------------------------------------------------

    def _flush(self) -> None:
        if self.transport is None or self._closing or self.sender is None:
            return
        out: list[Part] = []
        while self._pending and self._pending[0].done:
            slot = self._pending.popleft()
            reply = slot.reply
            self.observe("latency", (slot.api, time.perf_counter() - slot.started))
            if reply is None:
                continue  # acks=0
            header = frames.response_header(slot.correlation_id, slot.flexible_header)
            out.append(I32.pack(len(header) + reply.length) + header)
            out.extend(reply.parts)  # type: ignore[arg-type]
        if out:
            self.sender.send(out)
        if self._close_after_flush and not self._pending and self.transport is not None:
            self._closing = True
            self.transport.close()  # after the buffered answer is written
            return
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._closing:
            return
        backlogged = self.sender is not None and self.sender.backlog_bytes > BACKLOG_HIGH
        want_pause = self._paused_writing or backlogged or len(self._pending) >= MAX_IN_FLIGHT
        if want_pause and not self._paused_reading:
            transport.pause_reading()
            self._paused_reading = True
        elif not want_pause and self._paused_reading:
            transport.resume_reading()
            self._paused_reading = False

    @property
    def busy(self) -> bool:
        """Requests received and not yet answered, or answers not yet on the wire."""
        return bool(self._pending) or (self.sender is not None and self.sender.waiting)

    def close_if_idle(self, idle_seconds: float) -> None:
        if not self._pending and time.monotonic() - self.last_active > idle_seconds and self.transport:
            log.info("closing idle connection %s", self.peer)
            self.transport.close()

    def shutdown(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _release(reply: Reply) -> None:
    for part in reply.parts:
        if isinstance(part, FileRegion):
            part.release()
