"""What the control-plane API speaks in: plain dataclasses and the ``ClusterAdmin`` interface.

The cluster layer (controller, metadata store) implements ``ClusterAdmin``; this package never
implements it, it only carries calls to it: ``service`` turns gRPC requests into these calls and the
results back into protobuf, and ``client`` turns the protobuf answers back into these dataclasses, so
callers on both ends (the broker, the CLI, the operator) see the same types.

Failures are ``tidelog.broker.protocol.errors.KafkaError`` subclasses (``for_code(code)(message)``):
3 UNKNOWN_TOPIC_OR_PARTITION, 36 TOPIC_ALREADY_EXISTS, 37 INVALID_PARTITIONS, 38
INVALID_REPLICATION_FACTOR, 39 INVALID_REPLICA_ASSIGNMENT, 40 INVALID_CONFIG, 41 NOT_CONTROLLER,
85 NO_REASSIGNMENT_IN_PROGRESS, ...; ``service`` maps them to gRPC status codes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

BROKER_STATES = ("running", "shutting_down", "offline")


@dataclass
class BrokerDesc:
    id: int
    host: str
    port: int
    rack: str | None
    alive: bool
    state: str  # one of BROKER_STATES


@dataclass
class ClusterDesc:
    cluster_id: str
    controller_id: int
    brokers: list[BrokerDesc]
    under_replicated: int  # partitions whose ISR is smaller than their replica list
    offline: int  # partitions without a live leader


@dataclass
class PartitionDesc:
    partition: int
    leader: int  # -1 when there is none
    leader_epoch: int
    replicas: list[int]
    isr: list[int]
    adding: list[int]  # replicas joining in a reassignment
    removing: list[int]  # replicas leaving in a reassignment


@dataclass
class TopicDesc:
    name: str
    topic_id: str
    configs: dict[str, str]  # overrides only; Kafka's names (retention.ms, min.insync.replicas, ...)
    partitions: list[PartitionDesc]


@dataclass
class Move:
    """Move one partition to ``replicas`` (preferred leader first); ``[]`` cancels its reassignment."""

    topic: str
    partition: int
    replicas: list[int]


@dataclass
class ReassignmentDesc:
    topic: str
    partition: int
    replicas: list[int]
    adding: list[int]
    removing: list[int]


@dataclass
class Plan:
    """What a drain or rebalance started: the replica moves and how many leaders change."""

    moves: list[Move]
    leader_changes: int


@dataclass
class RestartCheck:
    """Can ``broker_id`` restart now without any partition dropping below min.insync.replicas?
    ``reasons`` names each partition that blocks it (empty when ``ok``)."""

    broker_id: int
    ok: bool
    reasons: list[str]


@dataclass(frozen=True)
class AclDesc:
    """One ACL binding in Kafka's names (see ``tidelog.broker.security.acl``): resource_type TOPIC,
    GROUP, CLUSTER or TRANSACTIONAL_ID; pattern_type LITERAL or PREFIXED; operation READ, WRITE, ...,
    ALL; permission ALLOW or DENY; principal ``User:<name>``; host an IP or ``*``."""

    resource_type: str
    resource_name: str
    pattern_type: str
    principal: str
    host: str
    operation: str
    permission: str


@dataclass
class ScramUserDesc:
    name: str
    mechanisms: list[str]


class ClusterAdmin(Protocol):
    """The cluster operations behind the Admin service. Every method may raise ``KafkaError``."""

    async def describe_cluster(self) -> ClusterDesc: ...

    async def list_topics(self) -> list[str]: ...

    async def describe_topic(self, name: str) -> TopicDesc: ...

    async def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str],
        assignment: list[list[int]] | None = None,
        validate_only: bool = False,
    ) -> TopicDesc: ...

    async def alter_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        replication_factor: int | None = None,
        set_configs: dict[str, str] | None = None,
        delete_configs: list[str] | None = None,
    ) -> TopicDesc: ...

    async def delete_topic(self, name: str) -> None: ...

    async def reassign(self, moves: list[Move], throttle_bytes_per_s: int | None = None) -> None: ...

    async def list_reassignments(self) -> list[ReassignmentDesc]: ...

    async def drain(self, broker_id: int) -> Plan: ...

    async def rebalance(self) -> Plan: ...

    async def can_restart(self, broker_id: int) -> RestartCheck: ...

    async def set_scram_user(self, user: str, mechanism: str, password: str, iterations: int = 0) -> None: ...

    async def delete_scram_user(self, user: str) -> bool: ...

    async def list_scram_users(self) -> list[ScramUserDesc]: ...

    async def set_acls(self, principal: str, acls: list[AclDesc]) -> tuple[int, int]:
        """Make ``principal``'s bindings exactly ``acls``; (added, removed)."""

    async def list_acls(self, principal: str | None = None) -> list[AclDesc]: ...
