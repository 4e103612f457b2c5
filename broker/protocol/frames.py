"""Request and response headers, and which versions of each API use the flexible encoding.

Request header v1: api_key, api_version, correlation_id, client_id (int16-length string, even in
v2). v2 (flexible APIs) adds tagged fields. Response header v0: correlation_id; v1 adds tagged
fields. ApiVersions answers always use response header v0 (clients parse it before they know).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from kio.index import load_request_schema

from tidelog.broker.protocol.wire import I32, InvalidRequestError, Reader

API_VERSIONS_KEY = 18


class RequestHeader(NamedTuple):
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    flexible: bool


@functools.cache
def is_flexible(api_key: int, api_version: int) -> bool:
    """Whether (api_key, api_version) uses flexible encoding, from Kafka's own schemas (kio)."""
    try:
        return bool(load_request_schema(api_key, api_version).__flexible__)
    except Exception:  # kio raises its own errors for versions it does not model (Produce v0-2 ...)
        return False


def peek_api(frame: memoryview) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) from the first 8 bytes of a frame."""
    if len(frame) < 8:
        raise InvalidRequestError(f"request of {len(frame)} bytes is shorter than a header")
    reader = Reader(frame)
    return reader.int16(), reader.int16(), reader.int32()


def read_request_header(frame: memoryview, flexible: bool) -> tuple[RequestHeader, int]:
    """Parse the header; returns it and the offset where the body starts."""
    reader = Reader(frame)
    api_key, api_version, correlation_id = reader.int16(), reader.int16(), reader.int32()
    client_id = reader.string(flexible=False)
    if flexible:
        reader.skip_tagged_fields()
    return RequestHeader(api_key, api_version, correlation_id, client_id, flexible), reader.pos


def response_header(correlation_id: int, flexible: bool) -> bytes:
    return I32.pack(correlation_id) + (b"\x00" if flexible else b"")
