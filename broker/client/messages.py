"""kio glue: build version-independent requests, frame them, parse responses. No I/O.

Requests are described once, as plain dicts holding the fields of the newest version the client
speaks; :func:`build` turns them into the kio dataclass of whichever version was negotiated,
keeping the fields that version has and dropping the others (nested entities and arrays
included). Integer milliseconds become the ``timedelta``/``datetime`` values kio expects, and integer error
codes its ``ErrorCode`` enum (its writer needs ``.value``).

Framing follows Kafka's header rules, which kio encodes per payload class in
``__header_schema__``: request header v1, or v2 for flexible versions (``client_id`` stays an
int16-length string); response header v0, or v1 for flexible versions, except ApiVersions, whose
response header is always v0.

kio quirks handled here: ``entity_reader(cls)(buf, offset)`` returns ``(value, consumed)`` and does
not raise when it stops short, so the consumed length is checked; an unknown tagged field makes it
raise ``KeyError`` (KIP-482 says skip), surfaced as a ``BrokerConnectionError``.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
from collections.abc import Iterable, Mapping
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from tidelog.broker.client.errors import BrokerConnectionError

T = TypeVar("T")
_INT32 = struct.Struct(">i")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def request_class(api_key: int, version: int) -> type[Any]:
    """The kio request dataclass of ``api_key`` at ``version``."""
    return load_request_schema(api_key, version)


def response_class(api_key: int, version: int) -> type[Any]:
    """The kio response dataclass of ``api_key`` at ``version``."""
    return load_response_schema(api_key, version)


def _unwrap(tp: Any) -> tuple[Any, bool, bool]:
    """(inner type, is array, is nullable) of a kio field annotation."""
    nullable = False
    if get_origin(tp) in (UnionType, Union):
        args = [a for a in get_args(tp) if a is not NoneType]
        nullable = len(args) != len(get_args(tp))
        tp = args[0]
    if get_origin(tp) is tuple:
        inner = get_args(tp)[0]
        if get_origin(inner) in (UnionType, Union):
            inner = next(a for a in get_args(inner) if a is not NoneType)
        return inner, True, nullable
    return tp, False, nullable


def _convert_scalar(kafka_type: str, value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if kafka_type.startswith("timedelta"):
            return datetime.timedelta(milliseconds=value)
        if kafka_type == "datetime_i64":
            return _EPOCH + datetime.timedelta(milliseconds=value)
        if kafka_type == "error_code":
            return ErrorCode(value)
    return value


def build(cls: type[T], values: Mapping[str, Any]) -> T:
    """An instance of the kio dataclass ``cls`` from ``values``: unknown keys are ignored, nested
    entities are built from dicts, missing nullable fields become None and missing arrays empty."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        inner, is_array, nullable = _unwrap(f.type)
        if f.name not in values:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            if nullable:
                kwargs[f.name] = None
            elif is_array:
                kwargs[f.name] = ()
            continue  # let the dataclass say which required field is missing
        value = values[f.name]
        kafka_type = str(f.metadata.get("kafka_type", ""))
        if value is None:
            kwargs[f.name] = None
        elif isinstance(inner, type) and dataclasses.is_dataclass(inner):
            kwargs[f.name] = tuple(build(inner, v) for v in value) if is_array else build(inner, value)
        elif is_array:
            kwargs[f.name] = tuple(_convert_scalar(kafka_type, v) for v in value)
        else:
            kwargs[f.name] = _convert_scalar(kafka_type, value)
    return cls(**kwargs)


def millis(value: Any) -> int:
    """Milliseconds from a kio ``timedelta``/``datetime`` field (None -> -1), or an int as is."""
    if value is None:
        return -1
    if isinstance(value, datetime.timedelta):
        return round(value.total_seconds() * 1000)
    if isinstance(value, datetime.datetime):
        return round((value - _EPOCH).total_seconds() * 1000)
    return int(value)


def encode_request(payload: Any, correlation_id: int, client_id: str | None) -> memoryview:
    """The whole frame (size prefix, header, body) of a kio request ``payload``: a view of the
    buffer kio wrote into (no final copy)."""
    header_cls = type(payload).__header_schema__
    header = header_cls(
        request_api_key=type(payload).__api_key__,
        request_api_version=type(payload).__version__,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    buf = io.BytesIO()
    buf.write(b"\0\0\0\0")
    entity_writer(header_cls)(buf, header)
    entity_writer(type(payload))(buf, payload)
    frame = buf.getbuffer()
    _INT32.pack_into(frame, 0, len(frame) - 4)
    return frame.toreadonly()  # kio's readers (and hashing) refuse writable buffers


def response_body_offset(response_cls: type[Any], frame: bytes | memoryview) -> int:
    """Offset of the body in a response ``frame`` (size prefix removed): after the correlation id,
    and for header v1 after its tagged fields."""
    header_cls = response_cls.__header_schema__
    _header, consumed = _read(header_cls, frame, 0)
    return consumed


def _read(cls: type[T], buf: bytes | memoryview, offset: int) -> tuple[T, int]:
    try:
        value, consumed = entity_reader(cls)(buf, offset)  # type: ignore[type-var]
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise BrokerConnectionError(f"cannot parse {cls.__name__}: {exc!r}") from exc
    return value, consumed


def decode_response(response_cls: type[T], frame: bytes | memoryview) -> T:
    """Parse a response frame (without its size prefix) as ``response_cls``, header included."""
    offset = response_body_offset(response_cls, frame)
    value, consumed = _read(response_cls, frame, offset)
    if offset + consumed != len(frame):
        raise BrokerConnectionError(
            f"{response_cls.__name__}: parsed {offset + consumed} of {len(frame)} bytes; wrong version or schema"
        )
    return value


def correlation_id_of(frame: bytes | memoryview) -> int:
    """The correlation id that starts every response header."""
    return int(_INT32.unpack_from(frame, 0)[0])


def pairs(items: Iterable[tuple[str, str | None]]) -> list[dict[str, Any]]:
    """Config ``(name, value)`` pairs as the ``{"name", "value"}`` dicts config requests take."""
    return [{"name": k, "value": v} for k, v in items]
