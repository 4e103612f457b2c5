"""Helpers shared by the log tests: batches made by a real client's encoder, and read-back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from kafka.record.default_records import DefaultRecordBatchBuilder

from tidelog.broker.log.log import PartitionLog
from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol.records import Record, iter_records

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def client_batch(
    values: Sequence[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    codec: int = 0,
    timestamp: int = 1_700_000_000_000,
    producer_id: int = -1,
    base_sequence: int = -1,
) -> bytearray:
    """A v2 batch encoded by kafka-python's own record builder, as a producer sends it."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=False,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    for i, value in enumerate(values):
        key = keys[i] if keys is not None else None
        builder.append(i, timestamp=timestamp + i, key=key, value=value, headers=[])
    return bytearray(builder.build())


def read_all(plog: PartitionLog, start: int | None = None, max_bytes: int = 1 << 20) -> list[Record]:
    """Every record from ``start`` (the log start by default) to the log end, via ``read``."""
    offset = plog.log_start_offset if start is None else start
    out: list[Record] = []
    while offset < plog.log_end_offset:
        info = plog.read(offset, max_bytes)
        if info.region is None:
            break
        try:
            data = info.region.read()
        finally:
            info.release()
        for _pos, records in iter_batches(data):
            out.extend(r for r in records if r.offset >= offset)
        offset = max(offset, out[-1].offset + 1 if out else offset)
        last_header = list(iter_batches(data))[-1][0]
        offset = max(offset, last_header.next_offset)
    return out


def iter_batches(data: bytes) -> Iterator[tuple[rb.BatchHeader, list[Record]]]:
    """Headers and records of the whole batches in ``data`` (a read region must hold only whole ones)."""
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        header = rb.check_batch(view, pos)
        yield header, list(iter_records(view, pos))
        pos += header.size


def fresh_batch(values: Sequence[bytes | None], **kwargs: object) -> bytearray:
    """``client_batch`` stamped with the current time: what a broker test must send, since records
    older than ``retention.ms`` (7 days) are deleted at the broker's next retention check."""
    import time

    return client_batch(values, timestamp=int(time.time() * 1000), **kwargs)  # type: ignore[arg-type]
