"""Kafka's primitive wire types: a cursor reader over a request, and small encoders.

Flexible versions (KIP-482) use unsigned varints for lengths (n + 1, 0 meaning null) and end every
struct with tagged fields, which a reader skips when it does not know them.
"""

from __future__ import annotations

import struct
import uuid

from tidelog.broker.protocol.errors import KafkaError

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
I16 = _I16
I32 = _I32
I64 = _I64


class InvalidRequestError(KafkaError):
    error_code = 42
    name = "INVALID_REQUEST"


class Reader:
    """A cursor over a request body. Every read checks bounds; a short body is INVALID_REQUEST."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def _take(self, n: int) -> int:
        pos = self.pos
        if n < 0 or pos + n > len(self.buf):
            raise InvalidRequestError(f"request truncated: need {n} bytes at {pos}, have {len(self.buf) - pos}")
        self.pos = pos + n
        return pos

    def int8(self) -> int:
        return int(_I8.unpack_from(self.buf, self._take(1))[0])

    def int16(self) -> int:
        return int(_I16.unpack_from(self.buf, self._take(2))[0])

    def int32(self) -> int:
        return int(_I32.unpack_from(self.buf, self._take(4))[0])

    def int64(self) -> int:
        return int(_I64.unpack_from(self.buf, self._take(8))[0])

    def uvarint(self) -> int:
        shift = value = 0
        while True:
            byte = self.buf[self._take(1)]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 35:
                raise InvalidRequestError("unsigned varint longer than 5 bytes")

    def string(self, flexible: bool) -> str | None:
        n = self.uvarint() - 1 if flexible else self.int16()
        if n < 0:
            return None
        start = self._take(n)
        try:
            return bytes(self.buf[start : start + n]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(f"string is not UTF-8: {exc}") from None

    def bytes_view(self, flexible: bool) -> memoryview | None:
        """Nullable bytes as a view into the request buffer (no copy)."""
        n = self.uvarint() - 1 if flexible else self.int32()
        if n < 0:
            return None
        start = self._take(n)
        return self.buf[start : start + n]

    def array_length(self, flexible: bool) -> int:
        n = self.uvarint() - 1 if flexible else self.int32()
        if n > len(self.buf):
            raise InvalidRequestError(f"array of {n} elements cannot fit in the request")
        return n

    def uuid(self) -> uuid.UUID:
        start = self._take(16)
        return uuid.UUID(bytes=bytes(self.buf[start : start + 16]))

    def skip_tagged_fields(self) -> None:
        """Skip every tagged field: unknown ones are allowed by the flexible-version rule."""
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())


def uvarint(value: int) -> bytes:
    out = bytearray()
    while value & ~0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def string(value: str | None, flexible: bool) -> bytes:
    if value is None:
        return b"\x00" if flexible else _I16.pack(-1)
    data = value.encode("utf-8")
    return (uvarint(len(data) + 1) if flexible else _I16.pack(len(data))) + data


def array_length(n: int | None, flexible: bool) -> bytes:
    if n is None:
        return b"\x00" if flexible else _I32.pack(-1)
    return uvarint(n + 1) if flexible else _I32.pack(n)


def bytes_length(n: int | None, flexible: bool) -> bytes:
    if n is None:
        return b"\x00" if flexible else _I32.pack(-1)
    return uvarint(n + 1) if flexible else _I32.pack(n)


EMPTY_TAGS = b"\x00"
