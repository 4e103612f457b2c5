"""The cluster's metadata as values: broker registrations, the controller, topics and the state of
each partition (replicas, leader, leader epoch, ISR, reassignment), with their JSON encoding and
the store keys they live under. No I/O: ``metadata`` reads and writes them through a
``MetadataStore``; the controller and replication decide what they should be.

Every change to a partition bumps ``partition_epoch``; a leadership change also bumps
``leader_epoch`` (KIP-101/279: followers truncate by it, clients are fenced by it).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

BROKERS = "brokers/"
TOPICS = "topics/"
CONTROLLER = "controller"
CONTROLLER_EPOCH = "controller-epoch"
CLUSTER = "cluster"
PRODUCER_IDS = "producer-ids"  # the next unallocated producer id (blocks are taken under CAS)
NO_LEADER = -1


def broker_key(broker_id: int) -> str:
    return f"{BROKERS}{broker_id}"


def topic_key(name: str) -> str:
    return f"{TOPICS}{name}"


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    """A live broker's registration (a leased key: it vanishes when the broker's session ends)."""

    broker_id: int
    host: str
    port: int
    rack: str | None = None
    admin_port: int = 0
    shutting_down: bool = False
    incarnation: str = ""  # a new value per process start: a restart is visible even if quick
    # Advertised address per listener name (``host``/``port`` are the inter-broker listener's);
    # empty in registrations written before brokers had named listeners.
    endpoints: tuple[tuple[str, str, int], ...] = ()

    def endpoint(self, listener: str) -> tuple[str, int] | None:
        """Where clients of ``listener`` reach this broker (None: the broker has no such listener)."""
        if not self.endpoints or not listener:
            return self.host, self.port
        return next(((host, port) for name, host, port in self.endpoints if name == listener), None)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "id": self.broker_id,
                "host": self.host,
                "port": self.port,
                "rack": self.rack,
                "admin_port": self.admin_port,
                "shutting_down": self.shutting_down,
                "incarnation": self.incarnation,
                "endpoints": [{"name": n, "host": h, "port": p} for n, h, p in self.endpoints],
            }
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> BrokerInfo:
        d = json.loads(raw)
        return cls(
            int(d["id"]),
            d["host"],
            int(d["port"]),
            d.get("rack"),
            int(d.get("admin_port", 0)),
            bool(d.get("shutting_down", False)),
            d.get("incarnation", ""),
            tuple((str(e["name"]), str(e["host"]), int(e["port"])) for e in d.get("endpoints", ())),
        )


@dataclass(frozen=True, slots=True)
class ControllerInfo:
    broker_id: int
    epoch: int

    def encode(self) -> bytes:
        return json.dumps({"id": self.broker_id, "epoch": self.epoch}).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ControllerInfo:
        d = json.loads(raw)
        return cls(int(d["id"]), int(d["epoch"]))


@dataclass(frozen=True, slots=True)
class PartitionState:
    """One partition: who holds it, who leads it, who is in sync. ``adding``/``removing``: a
    reassignment in progress (``replicas`` then holds old and new replicas together)."""

    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int = NO_LEADER
    leader_epoch: int = 0
    partition_epoch: int = 0
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "replicas": list(self.replicas),
            "isr": list(self.isr),
            "leader": self.leader,
            "leader_epoch": self.leader_epoch,
            "partition_epoch": self.partition_epoch,
        }
        if self.adding or self.removing:
            d["adding"] = list(self.adding)
            d["removing"] = list(self.removing)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PartitionState:
        return cls(
            tuple(d["replicas"]),
            tuple(d["isr"]),
            int(d["leader"]),
            int(d["leader_epoch"]),
            int(d["partition_epoch"]),
            tuple(d.get("adding", ())),
            tuple(d.get("removing", ())),
        )

    def with_leader(self, leader: int, isr: tuple[int, ...]) -> PartitionState:
        """A leadership change: new leader epoch (always, even to the same broker)."""
        return replace(
            self, leader=leader, isr=isr, leader_epoch=self.leader_epoch + 1, partition_epoch=self.partition_epoch + 1
        )

    def with_isr(self, isr: tuple[int, ...]) -> PartitionState:
        return replace(self, isr=isr, partition_epoch=self.partition_epoch + 1)

    @property
    def target_replicas(self) -> tuple[int, ...]:
        """Where the partition will live once its reassignment (if any) completes."""
        return tuple(r for r in self.replicas if r not in self.removing)


@dataclass(frozen=True, slots=True)
class TopicState:
    name: str
    topic_id: uuid.UUID
    partitions: tuple[PartitionState, ...]
    configs: dict[str, str] = field(default_factory=dict)
    throttle_bytes_per_s: int = 0  # reassignment replication throttle (0: none)

    @property
    def replication_factor(self) -> int:
        return len(self.partitions[0].target_replicas) if self.partitions else 0

    def encode(self) -> bytes:
        return json.dumps(
            {
                "version": 1,
                "name": self.name,
                "id": str(self.topic_id),
                "configs": self.configs,
                "throttle": self.throttle_bytes_per_s,
                "partitions": [p.to_json() for p in self.partitions],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> TopicState:
        d = json.loads(raw)
        return cls(
            d["name"],
            uuid.UUID(d["id"]),
            tuple(PartitionState.from_json(p) for p in d["partitions"]),
            dict(d.get("configs", {})),
            int(d.get("throttle", 0)),
        )

    def with_partition(self, index: int, state: PartitionState) -> TopicState:
        parts = list(self.partitions)
        parts[index] = state
        return replace(self, partitions=tuple(parts))
