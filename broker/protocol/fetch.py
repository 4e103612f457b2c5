"""Fetch response encoding by hand (versions 4-12): header bytes interleaved with record regions, so
record data goes from the page cache to the socket without passing through an encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from tidelog.broker.protocol import wire
from tidelog.broker.protocol.wire import I16, I32, I64


class Region(Protocol):
    """A byte range of a file (the log's FileRegion)."""

    @property
    def length(self) -> int: ...


class PartitionResult(NamedTuple):
    partition: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: Region | None


Part = bytes | Region


def encode_response(
    topics: Sequence[tuple[str, Sequence[PartitionResult]]],
    version: int,
    flexible: bool,
    *,
    error_code: int = 0,
    session_id: int = 0,
    throttle_ms: int = 0,
) -> tuple[list[Part], int]:
    """The response body as parts (bytes and regions) and its total length."""
    parts: list[Part] = []
    head = [I32.pack(throttle_ms)]
    if version >= 7:
        head.append(I16.pack(error_code) + I32.pack(session_id))
    head.append(wire.array_length(len(topics), flexible))
    pending = b"".join(head)
    total = 0
    for name, partitions in topics:
        pending += wire.string(name, flexible) + wire.array_length(len(partitions), flexible)
        for p in partitions:
            chunk = I32.pack(p.partition) + I16.pack(p.error_code) + I64.pack(p.high_watermark)
            chunk += I64.pack(p.last_stable_offset)
            if version >= 5:
                chunk += I64.pack(p.log_start_offset)
            chunk += wire.array_length(0, flexible)  # aborted transactions: none (no transactions yet)
            if version >= 11:
                chunk += I32.pack(-1)  # preferred_read_replica
            length = p.records.length if p.records is not None else 0
            chunk += wire.bytes_length(length, flexible)
            pending += chunk
            if p.records is not None and length:
                parts.append(pending)
                total += len(pending)
                parts.append(p.records)
                total += length
                pending = b""
            if flexible:
                pending += wire.EMPTY_TAGS
        if flexible:
            pending += wire.EMPTY_TAGS
    if flexible:
        pending += wire.EMPTY_TAGS
    parts.append(pending)
    total += len(pending)
    return parts, total
