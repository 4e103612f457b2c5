"""Walking the batches of a segment file: headers only (cheap), or every byte with its CRC (recovery).

Both walks stop with ``TornBatchError`` at the first batch that is incomplete or damaged; recovery
truncates the file there, readers treat it as storage corruption.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol.errors import KafkaError

_CHUNK = 1 << 20


class TornBatchError(Exception):
    """No valid batch at ``position``: a torn write, a short file, or corruption."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"invalid batch at position {position}: {reason}")
        self.position = position
        self.reason = reason


def headers(fd: int, start: int, end: int) -> Iterator[tuple[int, rb.BatchHeader]]:
    """Yield (position, header) of each batch in [start, end), reading 61 bytes per batch."""
    pos = start
    while pos < end:
        raw = os.pread(fd, rb.HEADER_SIZE, pos)
        try:
            header = rb.check_header(raw, 0) if len(raw) == rb.HEADER_SIZE else None
        except KafkaError as exc:
            raise TornBatchError(pos, str(exc)) from exc
        if header is None:
            raise TornBatchError(pos, f"only {len(raw)} header bytes")
        if pos + header.size > end:
            raise TornBatchError(pos, f"batch of {header.size} bytes runs past {end}")
        yield pos, header
        pos += header.size


def verified(fd: int, start: int, end: int, max_batch: int) -> Iterator[tuple[int, rb.BatchHeader]]:
    """Yield (position, header) of each batch in [start, end), checking length bounds and CRC."""
    pos = start
    buf = b""
    buf_pos = start
    while pos < end:
        rel = pos - buf_pos
        if len(buf) - rel < rb.HEADER_SIZE:
            buf = os.pread(fd, min(_CHUNK, end - pos), pos)
            buf_pos, rel = pos, 0
            if len(buf) < rb.HEADER_SIZE:
                raise TornBatchError(pos, f"only {len(buf)} bytes left, less than a batch header")
        size = int.from_bytes(buf[rel + 8 : rel + 12], "big", signed=True) + rb.LOG_OVERHEAD
        if size < rb.HEADER_SIZE or size > max_batch:
            raise TornBatchError(pos, f"impossible batch size {size}")
        if pos + size > end:
            raise TornBatchError(pos, f"batch of {size} bytes runs past the end of the file")
        if len(buf) - rel < size:
            buf = os.pread(fd, max(min(_CHUNK, end - pos), size), pos)
            buf_pos, rel = pos, 0
            if len(buf) < size:
                raise TornBatchError(pos, "short read")
        try:
            header = rb.check_batch(memoryview(buf)[rel : rel + size], 0)
        except KafkaError as exc:
            raise TornBatchError(pos, str(exc)) from exc
        yield pos, header
        pos += size
