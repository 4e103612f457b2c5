"""Bearer tokens for the control plane: every call of the ``Admin`` service must carry
``authorization: Bearer <token>`` metadata matching a token of the broker's token file; the health
service stays open (probes carry no secrets).

- ``TokenFile``: the accepted tokens, one per non-empty line (two lines while rotating), read from a
  file (a mounted Kubernetes Secret) and read again when the file changes. A file that disappears
  or empties after start refuses every call until it is back (fail closed), logged once per change.
- ``TokenInterceptor``: the server side, a ``grpc.aio.ServerInterceptor``; a missing, malformed or
  wrong token is UNAUTHENTICATED with a message saying which. Comparison is constant-time
  (``hmac.compare_digest`` against every accepted token). The token is never logged.
- ``bearer_metadata``: the client side's metadata.

Neighbours: ``transport`` (TLS, which a token should travel under outside a trusted network),
``server`` and ``client``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger(__name__)

METADATA_KEY = "authorization"
SCHEME = "Bearer"
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
MIN_LENGTH = 16


class TokenFileError(ValueError):
    """The token file cannot be used (missing, unreadable, empty, a token too short)."""


def _read_tokens(path: Path) -> tuple[bytes, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenFileError(f"admin token file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise TokenFileError(f"admin token file {path}: cannot read it: {reason}") from None
    tokens = tuple(line.strip().encode() for line in text.splitlines() if line.strip())
    if not tokens:
        raise TokenFileError(f"admin token file {path}: empty (one token per line)")
    if any(len(t) < MIN_LENGTH or b" " in t for t in tokens):
        raise TokenFileError(
            f"admin token file {path}: a token is shorter than {MIN_LENGTH} characters or holds a space "
            "(make one with: openssl rand -hex 32)"
        )
    return tokens


class TokenFile:
    """The tokens in ``path``; raises ``TokenFileError`` now if the file cannot be used."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._stat()
        self._tokens: tuple[bytes, ...] = _read_tokens(path)
        self._problem: str | None = None

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def tokens(self) -> tuple[bytes, ...]:
        """The accepted tokens, read again if the file changed; () when it became unusable."""
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._tokens, self._problem = _read_tokens(self.path), None
                log.info("admin token file %s read again", self.path)
            except TokenFileError as exc:
                self._tokens, self._problem = (), str(exc)
                log.error("%s: every admin call is refused until it is fixed", exc)
        return self._tokens

    def first(self) -> str:
        """The token a client sends (the file's first)."""
        tokens = self.tokens()
        if not tokens:
            raise TokenFileError(self._problem or f"admin token file {self.path}: no token")
        return tokens[0].decode()

    def check(self, presented: str | bytes | None) -> str | None:
        """None if ``presented`` (the whole metadata value, ``Bearer <token>``) is accepted, or why not."""
        accepted = self.tokens()
        if not accepted:
            return "the broker's admin token file is unusable; ask its operator"
        if presented is None:
            return (
                f"missing admin token: send '{METADATA_KEY}: {SCHEME} <token>' metadata "
                "(tidelog cluster --admin-token-file)"
            )
        value = presented.encode() if isinstance(presented, str) else bytes(presented)
        scheme, _, token = value.strip().partition(b" ")
        if scheme.lower() != SCHEME.lower().encode() or not token.strip():
            return f"malformed '{METADATA_KEY}' metadata: expected '{SCHEME} <token>'"
        token = token.strip()
        matched = False
        for candidate in accepted:  # every one compared: the time taken tells nothing
            matched |= hmac.compare_digest(candidate, token)
        return None if matched else "invalid admin token"


def bearer_metadata(token: str) -> tuple[tuple[str, str]]:
    return ((METADATA_KEY, f"{SCHEME} {token}"),)


def _deny(handler: grpc.RpcMethodHandler[Any, Any], message: str) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as ``handler`` that aborts every call UNAUTHENTICATED."""

    async def abort(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def abort_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        nothing: tuple[Any, ...] = ()
        for item in nothing:  # an async generator (grpc streams its answer) that yields nothing
            yield item
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    de, ser = handler.request_deserializer, handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream, de, ser)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, de, ser)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_stream, de, ser)
    return grpc.unary_unary_rpc_method_handler(abort, de, ser)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call but the health service's without an accepted bearer token."""

    def __init__(self, tokens: TokenFile, open_prefixes: Sequence[str] = OPEN_PREFIXES) -> None:
        self.token_file = tokens
        self.open_prefixes = tuple(open_prefixes)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(self.open_prefixes):
            return handler
        presented = next((v for k, v in handler_call_details.invocation_metadata or () if k == METADATA_KEY), None)
        problem = self.token_file.check(presented)
        if problem is None:
            return handler
        log.warning("admin API: refused %s: %s", method, problem.split(":")[0])
        return _deny(handler, problem)
