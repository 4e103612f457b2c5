"""Producing: records -> v2 batches (``build_batch``) -> Produce requests to partition leaders.

``Producer.send`` routes each record (explicit partition, else Java's murmur2 of the key, else
round-robin per call for keyless records), builds one batch per partition, and sends one Produce
request per leader. ``acks`` is 0 (no answer: offsets unknown, -1), 1 (leader) or -1 (all ISR).
Leader errors (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE, UNKNOWN_TOPIC_OR_PARTITION right
after creation) refresh metadata and retry until the deadline; those errors mean nothing was
written, so a retry cannot duplicate. Not idempotent: no producer id, no sequence numbers (yet).

``produce_batches`` sends already-built batches as they are (no copy beyond the request buffer).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tidelog.broker.client import messages
from tidelog.broker.client.cluster import RETRY_BACKOFF_S, KafkaClient
from tidelog.broker.client.errors import raise_for_code
from tidelog.broker.client.metadata import TopicPartition
from tidelog.broker.client.partitioner import partition_for_key
from tidelog.broker.client.versions import ApiKey
from tidelog.broker.protocol import codecs
from tidelog.broker.protocol.records import Header, Record, build_batch

ACKS = (0, 1, -1)
# Codes that mean "this broker did not write it": safe to refresh metadata and resend.
_RESEND_CODES = frozenset({3, 5, 6, 13})


@dataclass(frozen=True)
class ProducerRecord:
    """A record to send; ``partition`` None means: by key, or round-robin without a key."""

    value: bytes | None
    key: bytes | None = None
    partition: int | None = None
    timestamp: int | None = None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True)
class ProduceResult:
    """Where a batch landed: base offset (-1 with acks=0) and the broker's append time (-1 if CreateTime)."""

    tp: TopicPartition
    base_offset: int
    count: int
    log_append_time: int = -1
    log_start_offset: int = -1


class Producer:
    """Sends records through a :class:`KafkaClient`."""

    def __init__(
        self,
        client: KafkaClient,
        *,
        acks: int = -1,
        compression: int | str = codecs.NONE,
        timeout_ms: int = 30_000,
    ) -> None:
        if acks not in ACKS:
            raise ValueError(f"acks must be one of {ACKS}, not {acks}")
        self.client = client
        self.acks = acks
        self.compression = codecs.BY_NAME[compression] if isinstance(compression, str) else compression
        if self.compression not in codecs.NAMES:
            raise ValueError(f"unknown compression codec {compression!r}")
        self.timeout_ms = timeout_ms
        self.metadata_wait_s = min(timeout_ms / 1000, 5.0)
        self._round_robin: dict[str, itertools.count[int]] = defaultdict(itertools.count)

    async def partition_for(self, topic: str, record: ProducerRecord) -> int:
        if record.partition is not None:
            return record.partition
        partitions = await self.client.partitions_for(topic, timeout_s=self.metadata_wait_s)
        if record.key is not None:
            return partition_for_key(record.key, len(partitions))
        return partitions[next(self._round_robin[topic]) % len(partitions)]

    def build(self, records: Sequence[ProducerRecord]) -> bytes:
        """One v2 batch of ``records`` (offsets 0..n-1; the broker assigns real ones)."""
        now = int(time.time() * 1000)
        return build_batch(
            [
                Record(i, now if r.timestamp is None else r.timestamp, r.key, r.value, r.headers)
                for i, r in enumerate(records)
            ],
            compression=self.compression,
        )

    async def send(self, topic: str, records: Iterable[ProducerRecord]) -> list[ProduceResult]:
        """Send ``records`` to ``topic``: one batch per partition, in the order given within each."""
        per_partition: dict[int, list[ProducerRecord]] = defaultdict(list)
        # Keyless records of one call share a partition (like Java's sticky partitioner per batch).
        sticky: int | None = None
        for record in records:
            if record.partition is None and record.key is None:
                if sticky is None:
                    sticky = await self.partition_for(topic, record)
                per_partition[sticky].append(record)
            else:
                per_partition[await self.partition_for(topic, record)].append(record)
        batches = {TopicPartition(topic, p): self.build(rs) for p, rs in per_partition.items()}
        counts = {TopicPartition(topic, p): len(rs) for p, rs in per_partition.items()}
        results = await self.produce_batches(batches)
        return [
            ProduceResult(tp, r.base_offset, counts[tp], r.log_append_time, r.log_start_offset)
            for tp, r in sorted(results.items())
        ]

    async def send_one(
        self, topic: str, value: bytes | None, key: bytes | None = None, partition: int | None = None
    ) -> ProduceResult:
        (result,) = await self.send(topic, [ProducerRecord(value, key, partition)])
        return result

    async def produce_batches(self, batches: Mapping[TopicPartition, bytes]) -> dict[TopicPartition, ProduceResult]:
        """Send prebuilt batches (one per partition) to their leaders; retry leader errors until the deadline."""
        deadline = time.monotonic() + self.timeout_ms / 1000
        pending = dict(batches)
        done: dict[TopicPartition, ProduceResult] = {}
        while pending:
            by_leader: dict[int, dict[TopicPartition, bytes]] = defaultdict(dict)
            for tp, batch in pending.items():
                leader = await self.client.leader_for(tp, timeout_s=max(deadline - time.monotonic(), 0))
                by_leader[leader.node_id][tp] = batch
            outcomes = await asyncio.gather(*(self._send_to(n, b) for n, b in by_leader.items()))
            retry: dict[TopicPartition, bytes] = {}
            for results, failed in outcomes:
                done.update(results)
                for tp, code in failed.items():
                    if time.monotonic() >= deadline:
                        raise_for_code(code, f"Produce to {tp}")
                    retry[tp] = pending[tp]
            if retry:
                self.client.invalidate()
                await asyncio.sleep(RETRY_BACKOFF_S)
            pending = retry
        return done

    async def _send_to(
        self, node_id: int, batches: Mapping[TopicPartition, bytes]
    ) -> tuple[dict[TopicPartition, ProduceResult], dict[TopicPartition, int]]:
        topics: dict[str, list[dict[str, object]]] = defaultdict(list)
        for tp, batch in batches.items():
            topics[tp.topic].append({"index": tp.partition, "records": batch})
        fields = {
            "transactional_id": None,
            "acks": self.acks,
            "timeout": self.timeout_ms,
            "topic_data": [{"name": t, "partition_data": parts} for t, parts in topics.items()],
        }
        conn = await self.client.connection(node_id)
        if self.acks == 0:
            await conn.send_only(ApiKey.PRODUCE, fields)
            return {tp: ProduceResult(tp, -1, 0) for tp in batches}, {}
        response = await conn.request(ApiKey.PRODUCE, fields, timeout_s=self.timeout_ms / 1000 + conn.request_timeout)
        results: dict[TopicPartition, ProduceResult] = {}
        failed: dict[TopicPartition, int] = {}
        for topic in response.responses:
            for p in topic.partition_responses:
                tp = TopicPartition(str(topic.name), int(p.index))
                code = int(p.error_code)
                if code in _RESEND_CODES:
                    failed[tp] = code
                    continue
                raise_for_code(code, f"Produce to {tp}", getattr(p, "error_message", None))
                results[tp] = ProduceResult(
                    tp,
                    int(p.base_offset),
                    0,
                    messages.millis(getattr(p, "log_append_time", None)),
                    int(getattr(p, "log_start_offset", -1)),
                )
        return results, failed
