"""Idempotent appends: check each batch's producer id, epoch and sequence against the partition's
producer state before it reaches the log, answer retried batches with their original offsets, and
keep the state durable (snapshots) and bounded (expiry). The Produce handler appends through here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from tidelog.broker.groups import producer_state
from tidelog.broker.groups.producer_ids import ProducerIdManager
from tidelog.broker.groups.producer_state import DuplicateSequenceError, ProducerStateTable
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol.errors import for_code

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]


class Appended(NamedTuple):
    first_offset: int
    log_append_time: int
    log_start_offset: int
    records: int
    bytes: int
    duplicate: bool


def _headers(records: memoryview) -> list[rb.BatchHeader]:
    """Headers of the batches in a record set (structure only: the log verifies CRCs)."""
    out = []
    pos = 0
    while pos < len(records):
        header = rb.check_header(records, pos)
        out.append(header)
        pos += header.size
    return out


class Idempotence:
    def __init__(
        self, data_dir: Path, expiration_ms: int = 86_400_000, *, node_id: int = 0, cluster: bool = False
    ) -> None:
        self.ids = ProducerIdManager(data_dir, node_id=node_id, cluster=cluster)
        self.expiration_ms = expiration_ms
        self.tables: dict[TopicPartition, ProducerStateTable] = {}
        self._dirty: set[TopicPartition] = set()

    def init(self, producer_id: int, epoch: int) -> tuple[int, int]:
        return self.ids.init(producer_id, epoch)

    def table(self, tp: TopicPartition, plog: PartitionLog) -> ProducerStateTable:
        table = self.tables.get(tp)
        if table is None:
            table = self.tables[tp] = producer_state.load(plog)
        return table

    def append(self, tp: TopicPartition, plog: PartitionLog, records: memoryview, leader_epoch: int = 0) -> Appended:
        """Append as leader, with producer checks for batches that carry a producer id."""
        if records[rb.HEADER_SIZE - 18 : rb.HEADER_SIZE - 10] == b"\xff" * 8 and len(records) >= rb.HEADER_SIZE:
            # producerId == -1 in the first batch: the common non-idempotent case, no state to touch
            headers: list[rb.BatchHeader] = []
            if rb.read_header(records, 0).size != len(records):
                headers = _headers(records)
        else:
            headers = _headers(records)
        idempotent = [h for h in headers if h.producer_id >= 0]
        if idempotent:
            table = self.table(tp, plog)
            duplicates = []
            for header in idempotent:
                try:
                    table.check(header)
                except DuplicateSequenceError as dup:
                    duplicates.append(dup.first_offset)
            if duplicates:
                if len(duplicates) != len(headers):
                    raise for_code(45)("a record set mixes retried and new batches")
                return Appended(duplicates[0], -1, plog.log_start_offset, 0, 0, True)
        info = plog.append_as_leader(records, leader_epoch=leader_epoch)
        if idempotent:
            offset = info.first_offset
            for header in headers:
                self.tables[tp].update(header, offset)
                offset += header.last_offset_delta + 1
            self._dirty.add(tp)
        return Appended(info.first_offset, info.log_append_time, info.log_start_offset, info.records, info.bytes, False)

    def snapshot(self, logs: dict[TopicPartition, PartitionLog], now_ms: int) -> None:
        """Expire idle producers and snapshot every changed table (run at checkpoint time)."""
        for tp, table in self.tables.items():
            if table.expire(now_ms, self.expiration_ms):
                self._dirty.add(tp)
        for tp in list(self._dirty):
            plog = logs.get(tp)
            if plog is not None:
                producer_state.write_snapshot(self.tables[tp], plog)
        self._dirty.clear()

    def follower_appended(self, tp: TopicPartition, plog: PartitionLog, records: memoryview) -> None:
        """A follower copied the leader's batches: keep the producer state it will need as leader."""
        headers = [h for h in _headers(records) if h.producer_id >= 0]
        if not headers:
            return
        table = self.tables.get(tp)
        if table is None:  # loading reads the log, which already holds these batches
            self.table(tp, plog)
        else:
            for header in headers:
                table.update(header, header.base_offset)
        self._dirty.add(tp)

    def truncated(self, tp: TopicPartition, plog: PartitionLog, offset: int) -> None:
        """The log was cut back to ``offset``: forget later batches and snapshots taken after it."""
        producer_state.delete_snapshots_after(plog.directory, offset)
        table = self.tables.get(tp)
        if table is not None:
            table.truncate(offset)

    def forget(self, tp: TopicPartition) -> None:
        self.tables.pop(tp, None)
        self._dirty.discard(tp)
