"""Kafka messages through kio (types generated from Kafka's JSON schemas): decode a request body,
encode a response body. Readers and writers are cached per (api key, version, direction).

kio's reader raises on unknown tagged fields (KIP-482 says skip them): such a request is refused as
INVALID_REQUEST with a clear message rather than a traceback. Bytes after the last field are
tolerated, as Kafka's parser tolerates them.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import functools
import io
import types
import typing
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from tidelog.broker.protocol.wire import InvalidRequestError


@functools.cache
def request_type(api_key: int, version: int) -> Any:
    return load_request_schema(api_key, version)


@functools.cache
def response_type(api_key: int, version: int) -> Any:
    return load_response_schema(api_key, version)


@functools.cache
def _reader(cls: Any) -> Any:
    return entity_reader(cls)


@functools.cache
def _writer(cls: Any) -> Any:
    return entity_writer(cls)


def decode_request(api_key: int, version: int, body: memoryview) -> Any:
    cls = request_type(api_key, version)
    try:
        value, consumed = _reader(cls)(bytes(body), 0)
    except KeyError as exc:
        raise InvalidRequestError(f"unsupported tagged field in {cls.__name__} v{version}: {exc}") from None
    except Exception as exc:  # kio's native reader raises plain exceptions on malformed input
        raise InvalidRequestError(f"malformed {cls.__name__} v{version}: {exc}") from None
    if consumed > len(body):
        raise InvalidRequestError(f"{cls.__name__} v{version}: read past the end of the request")
    # Trailing bytes are tolerated, as Kafka's own parser does: librdkafka 2.16 sends Metadata v12
    # requests with 3 bytes after the last field (found by tests/integration/test_clients.py).
    return value


def encode_response(value: Any) -> bytes:
    buf = io.BytesIO()
    writer: Any = _writer(typing.cast(Any, type(value)))
    writer(buf, value)
    return buf.getvalue()


def _convert(tp: Any, value: Any) -> Any:
    """Turn plain Python values into what kio's field type expects (enums, timedeltas, entities)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_convert(inner, v) for v in value)
    if origin in (types.UnionType, typing.Union):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return _convert(inner, value)
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            return build(typing.cast(Any, tp), **value)
        if issubclass(tp, enum.Enum):
            return tp(value)
        if tp.__name__.endswith("Timedelta") and isinstance(value, int):
            return datetime.timedelta(milliseconds=value)
    return value


@functools.cache
def _field_types(cls: Any) -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(cls)}


def build(cls: Any, **values: Any) -> Any:
    """Construct kio entity ``cls`` from plain values; fields this version lacks are dropped, so one
    handler can answer every version. Nested entities are given as dicts."""
    fields = _field_types(cls)
    return cls(**{name: _convert(fields[name], v) for name, v in values.items() if name in fields})


def field_or(value: Any, name: str, default: Any) -> Any:
    """A request field that only some versions have."""
    return getattr(value, name, default)


def as_int(value: Any) -> int:
    """kio timedeltas and enums as plain integers (milliseconds, codes)."""
    if isinstance(value, datetime.timedelta):
        return round(value.total_seconds() * 1000)
    if isinstance(value, enum.Enum):
        return int(value.value)
    return int(value)
