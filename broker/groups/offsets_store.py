"""Committed offsets and group metadata, durable in the compacted internal topic
``__consumer_offsets``, in Kafka's own record formats (so Kafka's tools could read them):

* offset commit: key v1 ``(group, topic, partition)``, value v3 ``(offset, leader epoch, metadata,
  commit timestamp)``;
* group metadata: key v2 ``(group)``, value v3 ``(protocol type, generation, protocol, leader,
  state timestamp, members)``;
* a tombstone (null value) deletes either.

A group lives in partition ``abs(javaHashCode(group)) % offsets.topic.num.partitions``, whose leader
is the group's coordinator (on a lone broker: this broker). Everything is reloaded at start-up.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tidelog.broker.groups.group import Group, Member, State
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.log.manager import LogManager
from tidelog.broker.protocol.errors import for_code
from tidelog.broker.protocol.records import Record, build_batch, iter_records
from tidelog.broker.protocol.wire import Reader

OFFSETS_TOPIC = "__consumer_offsets"
_H = struct.Struct(">h")
_I = struct.Struct(">i")
_Q = struct.Struct(">q")


def java_string_hash(value: str) -> int:
    h = 0
    data = value.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, partitions: int) -> int:
    h = java_string_hash(group_id)
    return (0 if h == -(2**31) else abs(h)) % partitions


def _s(value: str | None) -> bytes:
    if value is None:
        return _H.pack(-1)
    data = value.encode()
    return _H.pack(len(data)) + data


def _b(value: bytes) -> bytes:
    return _I.pack(len(value)) + value


@dataclass(slots=True)
class OffsetEntry:
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int


def offset_key(group: str, topic: str, partition: int) -> bytes:
    return _H.pack(1) + _s(group) + _s(topic) + _I.pack(partition)


def offset_value(entry: OffsetEntry) -> bytes:
    return (
        _H.pack(3)
        + _Q.pack(entry.offset)
        + _I.pack(entry.leader_epoch)
        + _s(entry.metadata)
        + _Q.pack(entry.commit_timestamp)
    )


def group_key(group: str) -> bytes:
    return _H.pack(2) + _s(group)


def group_value(group: Group) -> bytes:
    members = b"".join(
        _s(m.member_id)
        + _s(m.group_instance_id)
        + _s(m.client_id)
        + _s(m.client_host)
        + _I.pack(m.rebalance_timeout_ms)
        + _I.pack(m.session_timeout_ms)
        + _b(m.metadata_for(group.protocol_name or ""))
        + _b(m.assignment)
        for m in group.members.values()
    )
    return (
        _H.pack(3)
        + _s(group.protocol_type or "")
        + _I.pack(group.generation_id)
        + _s(group.protocol_name)
        + _s(group.leader_id)
        + _Q.pack(int(time.time() * 1000))
        + _I.pack(len(group.members))
        + members
    )


def _parse_group(group_id: str, value: bytes) -> Group:
    r = Reader(memoryview(value))
    r.int16()  # version
    protocol_type = r.string(False)
    generation = r.int32()
    protocol = r.string(False)
    leader = r.string(False)
    r.int64()
    group = Group(group_id, State.EMPTY, generation, protocol_type or None, protocol, leader)
    for _ in range(r.int32()):
        member_id = r.string(False) or ""
        instance = r.string(False)
        client_id = r.string(False) or ""
        host = r.string(False) or ""
        rebalance, session = r.int32(), r.int32()
        subscription = bytes(r.bytes_view(False) or b"")
        assignment = bytes(r.bytes_view(False) or b"")
        member = Member(
            member_id,
            instance,
            client_id,
            host,
            session,
            rebalance,
            protocol_type or "",
            [(protocol or "", subscription)],
            assignment,
        )
        group.members[member_id] = member
        if instance:
            group.static_members[instance] = member_id
    group.state = State.STABLE if group.members else State.EMPTY
    return group


OFFSETS_CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(100 * 1024 * 1024)}
COORDINATOR_NOT_AVAILABLE = 15


class OffsetsStore:
    """Committed offsets and group metadata in ``__consumer_offsets``. On a lone broker it writes
    the partition logs directly; in a cluster ``leader_log`` and ``appended`` route writes through
    the partition's leader replica (``replication``), and the topic is created by the cluster."""

    def __init__(
        self,
        topics: Any,
        logs: LogManager,
        num_partitions: int = 50,
        *,
        replication_factor: int = 1,
        leader_log: Callable[[int], tuple[PartitionLog, int]] | None = None,
        appended: Callable[[int], None] | None = None,
    ) -> None:
        self.topics = topics
        self.logs = logs
        self.num_partitions = num_partitions
        self.replication_factor = replication_factor
        self.leader_log = leader_log
        self.appended = appended
        self.offsets: dict[str, dict[tuple[str, int], OffsetEntry]] = {}

    def ensure_topic(self) -> None:
        if OFFSETS_TOPIC not in self.topics.topics:
            if self.leader_log is not None:  # a cluster: created in the background; ask again soon
                self.topics.auto_create(OFFSETS_TOPIC, self.num_partitions, self.replication_factor, OFFSETS_CONFIGS)
                raise for_code(COORDINATOR_NOT_AVAILABLE)(f"{OFFSETS_TOPIC} is being created")
            self.topics.create(OFFSETS_TOPIC, self.num_partitions, 1, dict(OFFSETS_CONFIGS))
        self.num_partitions = self.topics.topics[OFFSETS_TOPIC].partitions

    def _log(self, partition: int) -> tuple[PartitionLog, int]:
        if self.leader_log is not None:
            return self.leader_log(partition)
        existing = self.logs.get(OFFSETS_TOPIC, partition)
        return existing or self.logs.get_or_create(OFFSETS_TOPIC, partition, self.topics.log_config(OFFSETS_TOPIC)), 0

    def partition_of(self, group_id: str) -> int:
        self.ensure_topic()
        return partition_for(group_id, self.num_partitions)

    def _append(self, group_id: str, pairs: list[tuple[bytes, bytes | None]]) -> None:
        if not pairs:
            return
        now = int(time.time() * 1000)
        batch = bytearray(build_batch([Record(i, now, k, v) for i, (k, v) in enumerate(pairs)]))
        partition = self.partition_of(group_id)
        plog, epoch = self._log(partition)
        plog.append_as_leader(memoryview(batch), leader_epoch=epoch)
        if self.appended is not None:
            self.appended(partition)

    def commit(self, group_id: str, entries: dict[tuple[str, int], OffsetEntry]) -> None:
        """Durable (in the page cache, as any append) before the caller answers."""
        self._append(group_id, [(offset_key(group_id, t, p), offset_value(e)) for (t, p), e in entries.items()])
        self.offsets.setdefault(group_id, {}).update(entries)

    def store_group(self, group: Group) -> None:
        self._append(group.group_id, [(group_key(group.group_id), group_value(group))])

    def delete_offsets(self, group_id: str, tps: list[tuple[str, int]]) -> None:
        current = self.offsets.get(group_id, {})
        self._append(group_id, [(offset_key(group_id, t, p), None) for t, p in tps if (t, p) in current])
        for tp in tps:
            current.pop(tp, None)

    def delete_group(self, group_id: str) -> None:
        tps = list(self.offsets.get(group_id, {}))
        self.delete_offsets(group_id, tps)
        self._append(group_id, [(group_key(group_id), None)])
        self.offsets.pop(group_id, None)

    def load(self, partitions: list[int] | None = None) -> dict[str, Group]:
        """Replay partitions of the offsets topic (all by default): committed offsets and groups."""
        groups: dict[str, Group] = {}
        if OFFSETS_TOPIC not in self.topics.topics:
            return groups
        self.num_partitions = self.topics.topics[OFFSETS_TOPIC].partitions
        for partition in range(self.num_partitions) if partitions is None else partitions:
            plog = self.logs.get(OFFSETS_TOPIC, partition)
            if plog is None:
                continue
            for record in _records(plog):
                if record.key is None:
                    continue
                self._apply(record, groups)
        return groups

    def unload(self, partition: int) -> list[str]:
        """Forget the offsets of groups in ``partition`` (leadership moved); returns those groups."""
        gone = [g for g in self.offsets if partition_for(g, self.num_partitions) == partition]
        for group_id in gone:
            del self.offsets[group_id]
        return gone

    def _apply(self, record: Record, groups: dict[str, Group]) -> None:
        assert record.key is not None
        r = Reader(memoryview(record.key))
        version = r.int16()
        if version in (0, 1):
            group_id, topic, partition = r.string(False) or "", r.string(False) or "", r.int32()
            if record.value is None:
                self.offsets.get(group_id, {}).pop((topic, partition), None)
                return
            v = Reader(memoryview(record.value))
            value_version = v.int16()
            offset = v.int64()
            epoch = v.int32() if value_version >= 3 else -1
            metadata = v.string(False) or ""
            commit_ts = v.int64()
            self.offsets.setdefault(group_id, {})[(topic, partition)] = OffsetEntry(offset, epoch, metadata, commit_ts)
        elif version == 2:
            group_id = r.string(False) or ""
            if record.value is None:
                groups.pop(group_id, None)
            else:
                groups[group_id] = _parse_group(group_id, record.value)


def _records(plog: PartitionLog) -> Iterator[Record]:
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        info = plog.read(offset, 4 * 1024 * 1024)
        if info.region is None:
            return
        try:
            data = info.region.read()
        finally:
            info.release()
        pos = 0
        last = offset
        while pos + 61 <= len(data):
            size = _I.unpack_from(data, pos + 8)[0] + 12
            for record in iter_records(data, pos):
                if record.offset >= offset:
                    yield record
            last = _Q.unpack_from(data, pos)[0] + _I.unpack_from(data, pos + 23)[0] + 1
            pos += size
        offset = max(last, offset + 1)


__all__: list[Any] = ["OFFSETS_TOPIC", "OffsetEntry", "OffsetsStore", "partition_for"]
