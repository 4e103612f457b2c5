"""Client-side failures: transport errors, timeouts, and Kafka error codes raised as typed errors.

Kafka outcomes come from ``tidelog.broker.protocol.errors`` (``for_code`` maps every code to a named
exception class); this module adds what only a client meets: a broken or closed connection, a
request that got no answer in time, no common API version. Transport errors subclass ``OSError``
(``ConnectionError``, ``TimeoutError``), so callers that handle network failures catch them too.
"""

from __future__ import annotations

from tidelog.broker.protocol.errors import KafkaError, for_code

__all__ = [
    "BrokerConnectionError",
    "KafkaError",
    "NoCommonVersionError",
    "RequestTimeoutError",
    "check",
    "raise_for_code",
]


class BrokerConnectionError(ConnectionError):
    """The connection to a broker failed, closed, or received bytes that do not parse."""


class RequestTimeoutError(TimeoutError):
    """A request got no answer within its deadline (the connection is closed afterwards)."""


class NoCommonVersionError(KafkaError):
    """The broker supports no version of an API that this client can speak (UNSUPPORTED_VERSION)."""

    error_code = 35
    name = "UNSUPPORTED_VERSION"


def raise_for_code(code: int, context: str, message: str | None = None) -> None:
    """Raise the typed Kafka error for ``code`` (nothing for 0), mentioning ``context``."""
    if code:
        detail = f"{context}: {message}" if message else context
        raise for_code(int(code))(detail)


def check(code: int, context: str, message: str | None = None) -> None:
    """Alias of :func:`raise_for_code` that reads well at call sites: ``check(p.error_code, "t-0")``."""
    raise_for_code(code, context, message)
