"""Per-partition state of idempotent producers: the last five batches' sequence ranges per producer
id, so a retried batch is recognised and answered with its original offsets, a gap is refused
(OUT_OF_ORDER_SEQUENCE_NUMBER) and an old epoch fenced (INVALID_PRODUCER_EPOCH).

Kafka's rules (``ProducerStateManager``): a new producer or a new epoch must start at sequence 0;
otherwise a batch must start right after the last one (sequences wrap at 2^31); a batch equal to one
of the cached five is a duplicate. The state is snapshotted into the partition directory
(``<offset>.producer-state.json``) and, on open, rebuilt from the newest snapshot plus the batch
headers after it; producers idle for ``producer.id.expiration.ms`` are forgotten.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tidelog.broker.log.io import DEFAULT_IO, FileIO
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.protocol.batch import BatchHeader
from tidelog.broker.protocol.errors import KafkaError, for_code

log = logging.getLogger(__name__)

CACHED_BATCHES = 5
SNAPSHOT_SUFFIX = ".producer-state.json"
INT32_MAX = 2**31 - 1


def _next_sequence(sequence: int) -> int:
    return 0 if sequence == INT32_MAX else sequence + 1


def _error(code: int, message: str) -> KafkaError:
    return for_code(code)(message)


@dataclass(slots=True)
class BatchRecord:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque[BatchRecord] = field(default_factory=lambda: deque(maxlen=CACHED_BATCHES))
    last_timestamp: int = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


class DuplicateSequenceError(Exception):
    """The batch was appended before; ``first_offset`` is where."""

    def __init__(self, first_offset: int) -> None:
        super().__init__(first_offset)
        self.first_offset = first_offset


class ProducerStateTable:
    """The producers of one partition."""

    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}

    def check(self, header: BatchHeader) -> None:
        """Raise ``DuplicateSequenceError`` for a retried batch, a Kafka error for a bad one; return if it may go in."""
        pid = header.producer_id
        if pid < 0:
            return
        first_seq = header.base_sequence
        last_seq = (first_seq + header.last_offset_delta) % (INT32_MAX + 1)
        entry = self.producers.get(pid)
        if entry is None:
            if first_seq != 0:
                raise _error(45, f"producer {pid} is unknown here and must start at sequence 0, not {first_seq}")
            return
        if header.producer_epoch < entry.epoch:
            raise _error(47, f"producer {pid} epoch {header.producer_epoch} is older than {entry.epoch}")
        if header.producer_epoch > entry.epoch:
            if first_seq != 0:
                raise _error(45, f"producer {pid}: a new epoch must start at sequence 0, not {first_seq}")
            return
        for cached in entry.batches:
            if cached.first_seq == first_seq and cached.last_seq == last_seq:
                raise DuplicateSequenceError(cached.first_offset)
        expected = _next_sequence(entry.last_seq)
        if first_seq != expected:
            raise _error(45, f"producer {pid}: sequence {first_seq} does not follow {entry.last_seq}")

    def update(self, header: BatchHeader, first_offset: int) -> None:
        """Record an appended batch (``first_offset`` is the offset the log gave it)."""
        pid = header.producer_id
        if pid < 0:
            return
        entry = self.producers.get(pid)
        if entry is None or header.producer_epoch > entry.epoch:
            entry = self.producers[pid] = ProducerEntry(header.producer_epoch)
        last_seq = (header.base_sequence + header.last_offset_delta) % (INT32_MAX + 1)
        entry.batches.append(
            BatchRecord(
                header.base_sequence,
                last_seq,
                first_offset,
                first_offset + header.last_offset_delta,
                header.max_timestamp,
            )
        )
        entry.last_timestamp = max(entry.last_timestamp, header.max_timestamp)

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        old = [pid for pid, e in self.producers.items() if now_ms - e.last_timestamp > expiration_ms]
        for pid in old:
            del self.producers[pid]
        return len(old)

    def truncate(self, offset: int) -> None:
        """Forget batches at or after ``offset`` (the log was truncated there)."""
        for pid in list(self.producers):
            entry = self.producers[pid]
            kept = [b for b in entry.batches if b.last_offset < offset]
            if kept:
                entry.batches = deque(kept, maxlen=CACHED_BATCHES)
            else:
                del self.producers[pid]

    # -- persistence -----------------------------------------------------------------------------

    def to_json(self) -> bytes:
        return json.dumps(
            {
                str(pid): {
                    "epoch": e.epoch,
                    "last_timestamp": e.last_timestamp,
                    "batches": [
                        [b.first_seq, b.last_seq, b.first_offset, b.last_offset, b.timestamp] for b in e.batches
                    ],
                }
                for pid, e in self.producers.items()
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ProducerStateTable:
        table = cls()
        for pid, e in json.loads(data).items():
            entry = ProducerEntry(int(e["epoch"]), last_timestamp=int(e["last_timestamp"]))
            for b in e["batches"]:
                entry.batches.append(BatchRecord(*(int(x) for x in b)))
            table.producers[int(pid)] = entry
        return table


def snapshot_path(directory: Path, offset: int) -> Path:
    return directory / f"{offset:020d}{SNAPSHOT_SUFFIX}"


def write_snapshot(table: ProducerStateTable, plog: PartitionLog, io: FileIO = DEFAULT_IO) -> Path:
    """Snapshot at the log end; older snapshots are removed."""
    path = snapshot_path(plog.directory, plog.log_end_offset)
    io.write_file_atomically(path, table.to_json())
    for old in _snapshots(plog.directory):
        if old != path:
            io.unlink(old)
    return path


def _snapshots(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SNAPSHOT_SUFFIX}"))


def delete_snapshots_after(directory: Path, offset: int) -> None:
    """Snapshots above ``offset`` describe a history the log no longer has (it was truncated)."""
    for path in _snapshots(directory):
        if int(path.name[:20]) > offset:
            path.unlink(missing_ok=True)


def load(plog: PartitionLog) -> ProducerStateTable:
    """The newest usable snapshot at or below the log end, then every batch header after it."""
    table = ProducerStateTable()
    start = plog.log_start_offset
    for path in reversed(_snapshots(plog.directory)):
        offset = int(path.name[:20])
        if offset > plog.log_end_offset:
            continue
        try:
            table = ProducerStateTable.from_json(path.read_bytes())
            start = offset
            break
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s: ignoring damaged producer snapshot %s: %s", plog.directory.name, path.name, exc)
    table.truncate(plog.log_end_offset)
    for header in _headers_from(plog, start):
        table.update(header, header.base_offset)
    return table


def _headers_from(plog: PartitionLog, offset: int) -> Iterable[BatchHeader]:
    for segment in plog.segments:
        if segment.size == 0:
            continue
        next_base = None
        index = plog.segments.index(segment)
        if index + 1 < len(plog.segments):
            next_base = plog.segments[index + 1].base_offset
        if next_base is not None and next_base <= offset:
            continue
        for _pos, header in segment.batches():
            if header.base_offset >= offset:
                yield header
