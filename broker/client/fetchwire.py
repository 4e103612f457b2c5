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

from dataclasses import dataclass

from tidelog.broker.client.errors import BrokerConnectionError
from tidelog.broker.protocol.wire import InvalidRequestError, Reader

FLEXIBLE_FROM = 12


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


def decode_fetch_response(frame: bytes | memoryview, version: int) -> FetchAnswer:
    """Decode a whole Fetch response ``frame`` (size prefix removed, header included) of ``version``."""
    if not 4 <= version <= FLEXIBLE_FROM:
        raise ValueError(f"the hand-written Fetch decoder handles v4-v{FLEXIBLE_FROM}, not v{version}")
    try:
        return _decode(Reader(memoryview(frame), 4), version, version >= FLEXIBLE_FROM)  # after the correlation id
    except InvalidRequestError as exc:  # the shared wire reader's "truncated / malformed"
        raise BrokerConnectionError(f"Fetch v{version} response: {exc}") from None


def _decode(r: Reader, version: int, flexible: bool) -> FetchAnswer:
    def tags() -> None:
        if flexible:
            r.skip_tagged_fields()

    tags()  # response header v1
    throttle = r.int32()
    error_code = r.int16() if version >= 7 else 0
    session_id = r.int32() if version >= 7 else 0
    topics: dict[str, list[PartitionAnswer]] = {}
    for _t in range(max(r.array_length(flexible), 0)):
        name = r.string(flexible) or ""
        parts = topics.setdefault(name, [])
        for _p in range(max(r.array_length(flexible), 0)):
            partition = r.int32()
            code = r.int16()
            high_watermark = r.int64()
            last_stable = r.int64()
            log_start = r.int64() if version >= 5 else -1
            aborted: tuple[tuple[int, int], ...] | None = None
            count = r.array_length(flexible)
            if count >= 0:
                items = []
                for _a in range(count):
                    items.append((r.int64(), r.int64()))
                    tags()
                aborted = tuple(items)
            preferred = r.int32() if version >= 11 else -1
            records = r.bytes_view(flexible)
            tags()
            parts.append(
                PartitionAnswer(partition, code, high_watermark, last_stable, log_start, aborted, preferred, records)
            )
        tags()
    tags()
    if r.pos != len(r.buf):
        raise BrokerConnectionError(f"Fetch v{version} response: {len(r.buf) - r.pos} unparsed trailing bytes")
    return FetchAnswer(throttle, error_code, session_id, topics)
