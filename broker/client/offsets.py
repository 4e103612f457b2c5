"""ListOffsets: a partition's earliest and latest offsets, or the first offset at a timestamp.

Requests go to each partition's leader, grouped per broker. Special timestamps follow Kafka:
``LATEST`` (-1, the log end / high watermark), ``EARLIEST`` (-2, the log start), ``MAX_TIMESTAMP``
(-3, the record with the largest timestamp). A timestamp past every record yields offset -1, as
Kafka answers it (Java's ``offsetsForTimes`` returns null there).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from tidelog.broker.client.cluster import RETRY_BACKOFF_S, KafkaClient
from tidelog.broker.client.errors import raise_for_code
from tidelog.broker.client.metadata import TopicPartition
from tidelog.broker.client.versions import ApiKey

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
READ_UNCOMMITTED = 0
READ_COMMITTED = 1
CONSUMER_REPLICA_ID = -1
# LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH: ask the new leader.
_LEADER_CODES = frozenset({5, 6, 74, 75})


@dataclass(frozen=True)
class OffsetAndTimestamp:
    offset: int
    timestamp: int
    leader_epoch: int = -1


async def list_offsets(
    client: KafkaClient,
    query: Mapping[TopicPartition, int],
    *,
    isolation_level: int = READ_UNCOMMITTED,
    timeout_s: float | None = None,
) -> dict[TopicPartition, OffsetAndTimestamp]:
    """For each partition, the offset for its timestamp (or ``LATEST``/``EARLIEST``/``MAX_TIMESTAMP``).

    Leadership errors (a partition just created or moving) refresh metadata and retry until
    ``timeout_s`` (default: the client's request timeout); other errors raise at once.
    """
    deadline = time.monotonic() + (client.request_timeout if timeout_s is None else timeout_s)
    pending = dict(query)
    out: dict[TopicPartition, OffsetAndTimestamp] = {}
    while True:
        by_leader: dict[int, dict[TopicPartition, int]] = defaultdict(dict)
        for tp, ts in pending.items():
            leader = await client.leader_for(tp, timeout_s=max(deadline - time.monotonic(), 0))
            by_leader[leader.node_id][tp] = ts
        retry: dict[TopicPartition, int] = {}
        for node_id, partitions in by_leader.items():
            for tp, (code, found) in (await _ask(client, node_id, partitions, isolation_level)).items():
                if code in _LEADER_CODES and time.monotonic() < deadline:
                    retry[tp] = pending[tp]
                    continue
                raise_for_code(code, f"ListOffsets {tp}")
                out[tp] = found
        if not retry:
            return out
        client.invalidate()
        await asyncio.sleep(RETRY_BACKOFF_S)
        pending = retry


async def _ask(
    client: KafkaClient, node_id: int, partitions: Mapping[TopicPartition, int], isolation_level: int
) -> dict[TopicPartition, tuple[int, OffsetAndTimestamp]]:
    topics: dict[str, list[dict[str, int]]] = defaultdict(list)
    for tp, ts in partitions.items():
        topics[tp.topic].append(
            {"partition_index": tp.partition, "timestamp": ts, "current_leader_epoch": -1, "max_num_offsets": 1}
        )
    fields = {
        "replica_id": CONSUMER_REPLICA_ID,
        "isolation_level": isolation_level,
        "topics": [{"name": topic, "partitions": parts} for topic, parts in topics.items()],
    }
    response = await (await client.connection(node_id)).request(ApiKey.LIST_OFFSETS, fields)
    answers: dict[TopicPartition, tuple[int, OffsetAndTimestamp]] = {}
    for topic in response.topics:
        for p in topic.partitions:
            tp = TopicPartition(str(topic.name), int(p.partition_index))
            found = OffsetAndTimestamp(int(p.offset), int(p.timestamp), int(getattr(p, "leader_epoch", -1)))
            answers[tp] = (int(p.error_code), found)
    return answers


async def earliest(client: KafkaClient, tp: TopicPartition) -> int:
    return (await list_offsets(client, {tp: EARLIEST}))[tp].offset


async def latest(client: KafkaClient, tp: TopicPartition) -> int:
    return (await list_offsets(client, {tp: LATEST}))[tp].offset


async def for_timestamp(client: KafkaClient, tp: TopicPartition, timestamp_ms: int) -> int:
    """The first offset whose timestamp is >= ``timestamp_ms``; -1 if none."""
    return (await list_offsets(client, {tp: timestamp_ms}))[tp].offset
