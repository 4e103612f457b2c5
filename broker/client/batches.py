"""Record batches inside a Fetch answer: split them without copying, decode records when asked.

A Fetch answer holds v2 batches back to back; the last one may be cut short by the size limits
(Kafka sends whole batches only up to ``partition_max_bytes``, except the first), so a partial
trailing batch ends the data quietly. Each complete batch is validated (``check_batch``, CRC-32C
included) and handed out as a ``memoryview`` slice of the answer: followers append those slices
as they are. :func:`records_from` decodes records (decompressing) and drops those below the
requested offset: a fetch that starts inside a batch receives the whole batch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from tidelog.broker.protocol.batch import LOG_OVERHEAD, BatchHeader, check_batch
from tidelog.broker.protocol.records import Record, iter_records

_INT32 = struct.Struct(">i")


def iter_batches(data: bytes | memoryview, *, verify_crc: bool = True) -> Iterator[tuple[BatchHeader, memoryview]]:
    """Complete batches in ``data`` as (header, slice); stops at a partial trailing batch."""
    view = memoryview(data)
    pos = 0
    end = len(view)
    while end - pos >= LOG_OVERHEAD:
        (length,) = _INT32.unpack_from(view, pos + 8)
        size = LOG_OVERHEAD + length
        if length < 0 or pos + size > end:
            return
        header = check_batch(view, pos, verify_crc=verify_crc)
        yield header, view[pos : pos + size]
        pos += size


def records_from(data: bytes | memoryview, offset: int, *, skip_control: bool = True) -> Iterator[Record]:
    """Records at or above ``offset`` in the complete batches of ``data``, in offset order."""
    for header, batch in iter_batches(data):
        if header.next_offset <= offset or (skip_control and header.is_control):
            continue
        for record in iter_records(batch):
            if record.offset >= offset:
                yield record


def next_offset_after(data: bytes | memoryview, offset: int) -> int:
    """The offset to fetch next: after the last complete batch in ``data``, never below ``offset``."""
    last = offset
    for header, _batch in iter_batches(data, verify_crc=False):
        last = max(last, header.next_offset)
    return last
