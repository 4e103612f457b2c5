"""Fetching: Fetch requests to partition leaders, answers as batch views and decoded records.

``Fetcher.fetch`` asks each leader for its partitions at the given offsets (one request per
leader, no fetch session: ``session_id`` 0, epoch -1) and returns a :class:`FetchedPartition`
per partition: high watermark, log start, and the record data as a ``memoryview`` of the answer
(complete batches only; see ``batches``). The answer is decoded by ``fetchwire``, by hand, so
record data stays a view of the response frame instead of a copy. ``replica_id`` >= 0 makes it a
follower fetch, which is what replication will use. Neighbours: ``offsets`` (where to start), ``batches`` (decoding).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from tidelog.broker.client import batches, messages
from tidelog.broker.client.cluster import KafkaClient
from tidelog.broker.client.errors import raise_for_code
from tidelog.broker.client.fetchwire import decode_fetch_response
from tidelog.broker.client.metadata import TopicPartition
from tidelog.broker.client.versions import ApiKey
from tidelog.broker.protocol.batch import BatchHeader
from tidelog.broker.protocol.records import Record

_EMPTY = memoryview(b"")
# Leadership moved or is unknown right now: forget routes, let the caller fetch again.
_STALE_ROUTE_CODES = frozenset({3, 5, 6, 74, 75, 100})


@dataclass(frozen=True)
class FetchedPartition:
    """One partition of a Fetch answer."""

    tp: TopicPartition
    fetch_offset: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    data: memoryview

    def batches(self) -> Iterator[tuple[BatchHeader, memoryview]]:
        """Complete batches, as views of the answer (a partial trailing batch is left out)."""
        return batches.iter_batches(self.data)

    def records(self) -> Iterator[Record]:
        """Decoded records from ``fetch_offset`` on (earlier records of the first batch skipped)."""
        return batches.records_from(self.data, self.fetch_offset)

    @property
    def next_offset(self) -> int:
        """Where the next fetch should start."""
        return batches.next_offset_after(self.data, self.fetch_offset)


class Fetcher:
    """Fetch requests over a :class:`KafkaClient`."""

    def __init__(
        self,
        client: KafkaClient,
        *,
        max_wait_ms: int = 500,
        min_bytes: int = 1,
        max_bytes: int = 50 * 1024 * 1024,
        partition_max_bytes: int = 1024 * 1024,
        isolation_level: int = 0,
        replica_id: int = -1,
    ) -> None:
        self.client = client
        self.max_wait_ms = max_wait_ms
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        self.partition_max_bytes = partition_max_bytes
        self.isolation_level = isolation_level
        self.replica_id = replica_id

    async def fetch(
        self, positions: Mapping[TopicPartition, int], *, raise_errors: bool = True
    ) -> dict[TopicPartition, FetchedPartition]:
        """Fetch every partition of ``positions`` from its offset. With ``raise_errors`` a partition
        error raises its typed Kafka error; otherwise it is returned in ``error_code``."""
        by_leader: dict[int, dict[TopicPartition, int]] = defaultdict(dict)
        for tp, offset in positions.items():
            leader = await self.client.leader_for(tp)
            by_leader[leader.node_id][tp] = offset
        answers = await asyncio.gather(*(self._fetch_from(n, p) for n, p in by_leader.items()))
        out: dict[TopicPartition, FetchedPartition] = {}
        for answer in answers:
            out.update(answer)
        if any(p.error_code in _STALE_ROUTE_CODES for p in out.values()):
            self.client.invalidate()
        if raise_errors:
            for p in out.values():
                raise_for_code(p.error_code, f"Fetch {p.tp} at offset {p.fetch_offset}")
        return out

    async def _fetch_from(
        self, node_id: int, positions: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, FetchedPartition]:
        topics: dict[str, list[dict[str, int]]] = defaultdict(list)
        for tp, offset in positions.items():
            topics[tp.topic].append(
                {
                    "partition": tp.partition,
                    "current_leader_epoch": -1,
                    "fetch_offset": offset,
                    "last_fetched_epoch": -1,
                    "log_start_offset": -1,
                    "partition_max_bytes": self.partition_max_bytes,
                }
            )
        fields = {
            "cluster_id": None,
            "replica_id": self.replica_id,
            "max_wait": self.max_wait_ms,
            "min_bytes": self.min_bytes,
            "max_bytes": self.max_bytes,
            "isolation_level": self.isolation_level,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic": t, "partitions": parts} for t, parts in topics.items()],
            "forgotten_topics_data": [],
            "rack_id": "",
        }
        conn = await self.client.connection(node_id)
        version = conn.version(ApiKey.FETCH)
        payload = messages.build(messages.request_class(ApiKey.FETCH, version), fields)
        frame = await conn.request_frame(
            ApiKey.FETCH, payload, timeout_s=self.max_wait_ms / 1000 + conn.request_timeout
        )
        answer = decode_fetch_response(frame, version)
        raise_for_code(answer.error_code, f"Fetch from broker {node_id}")
        out: dict[TopicPartition, FetchedPartition] = {}
        for topic, partitions in answer.topics.items():
            for p in partitions:
                tp = TopicPartition(topic, p.partition)
                out[tp] = FetchedPartition(
                    tp=tp,
                    fetch_offset=positions.get(tp, 0),
                    error_code=p.error_code,
                    high_watermark=p.high_watermark,
                    last_stable_offset=p.last_stable_offset,
                    log_start_offset=p.log_start_offset,
                    data=p.records if p.records is not None else _EMPTY,
                )
        return out
