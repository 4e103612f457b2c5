"""A hand-written Fetch response decoder (v4-v12) that keeps record data as views of the frame.

kio's generated reader copies every partition's record bytes into a new ``bytes``; a follower
fetching megabytes per request should not pay that, so this module walks the response itself and
returns ``memoryview`` slices of the frame for the records. It also skips unknown tagged fields, as
KIP-482 requires (kio raises on them). Layout, by version:

* header: correlation id; v12 adds tagged fields (response header v1)
* throttle_time_ms int32; error_code int16 and session_id int32 (v7+)
* topics[]: name; partitions[]: partition_index int32, error_code int16, high_watermark int64,
  last_stable_offset int64, log_start_offset int64 (v5+), aborted_transactions[]
  (producer_id int64, first_offset int64; nullable), preferred_read_replica int32 (v11+),
  records (nullable bytes)
* v12 (flexible): compact arrays/strings/bytes (unsigned varint length + 1) and tagged fields after
  every structure.

Tested against kio's reader on responses kio writes, at every version.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tidelog.broker.client.errors import BrokerConnectionError

FLEXIBLE_FROM = 12
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


@dataclass(frozen=True, slots=True)
class PartitionAnswer:
    partition: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    aborted: tuple[tuple[int, int], ...] | None
    preferred_read_replica: int
    records: memoryview | None


@dataclass(frozen=True, slots=True)
class FetchAnswer:
    throttle_time_ms: int
    error_code: int
    session_id: int
    topics: dict[str, list[PartitionAnswer]]


class _Cursor:
    __slots__ = ("buf", "flexible", "pos")

    def __init__(self, buf: memoryview, pos: int, flexible: bool) -> None:
        self.buf = buf
        self.pos = pos
        self.flexible = flexible

    def _take(self, n: int) -> int:
        start = self.pos
        if n < 0 or start + n > len(self.buf):
            raise BrokerConnectionError(f"Fetch response truncated at byte {start} (needs {n} more)")
        self.pos = start + n
        return start

    def i16(self) -> int:
        return int(_I16.unpack_from(self.buf, self._take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack_from(self.buf, self._take(4))[0])

    def i64(self) -> int:
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
                raise BrokerConnectionError("unsigned varint longer than 5 bytes in a Fetch response")

    def length(self) -> int:
        """An array/string/bytes length: -1 for null."""
        if self.flexible:
            return self.uvarint() - 1
        return self.i32()

    def string(self) -> str:
        n = self.uvarint() - 1 if self.flexible else self.i16()
        if n < 0:
            return ""
        start = self._take(n)
        return bytes(self.buf[start : start + n]).decode("utf-8")

    def bytes_view(self) -> memoryview | None:
        n = self.length()
        if n < 0:
            return None
        start = self._take(n)
        return self.buf[start : start + n]

    def skip_tagged_fields(self) -> None:
        if not self.flexible:
            return
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())


def decode_fetch_response(frame: bytes | memoryview, version: int) -> FetchAnswer:
    """Decode a whole Fetch response ``frame`` (size prefix removed, header included) of ``version``."""
    if not 4 <= version <= FLEXIBLE_FROM:
        raise ValueError(f"the hand-written Fetch decoder handles v4-v{FLEXIBLE_FROM}, not v{version}")
    c = _Cursor(memoryview(frame), 4, version >= FLEXIBLE_FROM)  # after the correlation id
    c.skip_tagged_fields()  # response header v1
    throttle = c.i32()
    error_code = c.i16() if version >= 7 else 0
    session_id = c.i32() if version >= 7 else 0
    topics: dict[str, list[PartitionAnswer]] = {}
    for _t in range(max(c.length(), 0)):
        name = c.string()
        parts = topics.setdefault(name, [])
        for _p in range(max(c.length(), 0)):
            partition = c.i32()
            code = c.i16()
            high_watermark = c.i64()
            last_stable = c.i64()
            log_start = c.i64() if version >= 5 else -1
            aborted: tuple[tuple[int, int], ...] | None = None
            count = c.length()
            if count >= 0:
                items = []
                for _a in range(count):
                    items.append((c.i64(), c.i64()))
                    c.skip_tagged_fields()
                aborted = tuple(items)
            preferred = c.i32() if version >= 11 else -1
            records = c.bytes_view()
            c.skip_tagged_fields()
            parts.append(
                PartitionAnswer(partition, code, high_watermark, last_stable, log_start, aborted, preferred, records)
            )
        c.skip_tagged_fields()
    c.skip_tagged_fields()
    if c.pos != len(c.buf):
        raise BrokerConnectionError(f"Fetch v{version} response: {len(c.buf) - c.pos} unparsed trailing bytes")
    return FetchAnswer(throttle, error_code, session_id, topics)
