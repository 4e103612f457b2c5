"""Cluster metadata as plain values: brokers, topics, partitions and their leaders.

Built from a Metadata response of any version the client speaks (v1-v12); ``cluster`` refreshes
it. Kept free of I/O so that routing decisions (which broker leads a partition) are testable alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class TopicPartition(NamedTuple):
    """A partition of a topic."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.partition}"


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline: tuple[int, ...]
    error_code: int = 0


@dataclass(frozen=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID | None
    is_internal: bool
    partitions: dict[int, PartitionInfo]
    error_code: int = 0


@dataclass(frozen=True)
class ClusterMetadata:
    """One Metadata answer: who is in the cluster, who leads what."""

    cluster_id: str | None
    controller_id: int
    brokers: dict[int, BrokerInfo]
    topics: dict[str, TopicInfo] = field(default_factory=dict)

    def leader(self, tp: TopicPartition) -> BrokerInfo | None:
        """The broker leading ``tp``, or None if unknown or leaderless right now."""
        topic = self.topics.get(tp.topic)
        if topic is None:
            return None
        part = topic.partitions.get(tp.partition)
        if part is None or part.leader < 0:
            return None
        return self.brokers.get(part.leader)

    def partition_count(self, topic: str) -> int:
        info = self.topics.get(topic)
        return len(info.partitions) if info else 0


def from_response(response: Any) -> ClusterMetadata:
    """A :class:`ClusterMetadata` from a kio ``MetadataResponse`` of any version."""
    brokers = {
        int(b.node_id): BrokerInfo(int(b.node_id), str(b.host), int(b.port), getattr(b, "rack", None))
        for b in response.brokers
    }
    topics: dict[str, TopicInfo] = {}
    for t in response.topics:
        if t.name is None:
            continue
        parts = {
            int(p.partition_index): PartitionInfo(
                partition=int(p.partition_index),
                leader=int(p.leader_id),
                leader_epoch=int(getattr(p, "leader_epoch", -1)),
                replicas=tuple(int(r) for r in p.replica_nodes),
                isr=tuple(int(r) for r in p.isr_nodes),
                offline=tuple(int(r) for r in getattr(p, "offline_replicas", ())),
                error_code=int(p.error_code),
            )
            for p in t.partitions
        }
        topic_id = getattr(t, "topic_id", None)
        if topic_id is not None and topic_id.int == 0:
            topic_id = None
        topics[str(t.name)] = TopicInfo(
            name=str(t.name),
            topic_id=topic_id,
            is_internal=bool(getattr(t, "is_internal", False)),
            partitions=parts,
            error_code=int(t.error_code),
        )
    return ClusterMetadata(
        cluster_id=getattr(response, "cluster_id", None),
        controller_id=int(getattr(response, "controller_id", -1)),
        brokers=brokers,
        topics=topics,
    )
