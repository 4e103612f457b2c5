"""What every API handler works with: the broker's identity, its topics, its logs and settings,
and the waiters that wake long-polling fetches when data arrives."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tidelog.broker.cluster.catalog import ClusterCatalog
from tidelog.broker.cluster.topics import TopicInfo, TopicStore
from tidelog.broker.groups.coordinator import GroupCoordinator
from tidelog.broker.groups.idempotence import Idempotence
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.log.manager import LogManager
from tidelog.broker.protocol import fetch
from tidelog.broker.protocol.errors import UnknownTopicOrPartitionError, for_code
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.replication.manager import ReplicaManager
from tidelog.broker.replication.replica import Replica
from tidelog.broker.security.acl import CLUSTER_NAME, Authorizer, Operation, ResourceType

Part = fetch.Part
TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED = 29, 30, 31


class Reply(NamedTuple):
    """A response body as parts (bytes and file regions) and its total length in bytes."""

    parts: list[Part]
    length: int

    @classmethod
    def of(cls, body: bytes) -> Reply:
        return cls([body], len(body))


Outcome = Reply | None  # None: no response at all (Produce with acks=0)
Handler = Callable[["BrokerContext", RequestHeader, memoryview], "Outcome | Awaitable[Outcome]"]


@dataclass(slots=True)
class Settings:
    """Broker settings the handlers need (Kafka's names in comments)."""

    node_id: int = 0  # node.id
    host: str = "127.0.0.1"  # advertised host of the listener the request came in on
    port: int = 9092  # advertised port of that listener
    listener: str = ""  # its name ("" = the only one)
    advertised_listeners: str = ""  # advertised.listeners, all of them (DescribeConfigs)
    rack: str | None = None  # broker.rack
    auto_create_topics: bool = True  # auto.create.topics.enable
    num_partitions: int = 1  # num.partitions
    default_replication_factor: int = 1  # default.replication.factor
    fetch_max_bytes: int = 55 * 1024 * 1024  # fetch.max.bytes


class Waiters:
    """Long-polling fetches wait here; appends to a partition wake them."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, int], asyncio.Event] = {}

    def event(self, topic: str, partition: int) -> asyncio.Event:
        key = (topic, partition)
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = asyncio.Event()
        return ev

    def notify(self, topic: str, partition: int) -> None:
        ev = self._events.pop((topic, partition), None)
        if ev is not None:
            ev.set()


@dataclass(slots=True)
class BrokerContext:
    settings: Settings
    topics: TopicStore | ClusterCatalog
    logs: LogManager
    idempotence: Idempotence
    groups: GroupCoordinator
    replicas: ReplicaManager
    waiters: Waiters = field(default_factory=Waiters)
    observe: Callable[[str, Any], None] = field(default=lambda _name, _value: None)
    cluster: Any = None  # the ClusterMetadata of a cluster member (None on a lone broker)
    credentials: Any = None  # the SCRAM CredentialStore (tidelog.broker.security.credentials)
    authorizer: Authorizer | None = None  # authorizer.class.name set: every API checks its operation
    acls: Any = None  # the AclStore (tidelog.broker.security.acl_store) behind the authorizer
    principal: str = "User:ANONYMOUS"  # this connection's client (each connection has its own context)
    client_host: str = ""  # its IP address, as ACL hosts name it

    def allowed(self, operation: Operation, resource_type: ResourceType, name: str) -> bool:
        """May this connection's principal do ``operation`` on the resource? (Always, without an
        authorizer.)"""
        authorizer = self.authorizer
        return authorizer is None or authorizer.authorize(
            self.principal, self.client_host, operation, resource_type, name
        )

    def allowed_topic(self, operation: Operation, topic: str) -> bool:
        authorizer = self.authorizer
        return authorizer is None or authorizer.authorize(
            self.principal, self.client_host, operation, ResourceType.TOPIC, topic
        )

    def check_topic(self, operation: Operation, topic: str) -> None:
        """Raise TOPIC_AUTHORIZATION_FAILED unless ``operation`` on ``topic`` is allowed."""
        if not self.allowed_topic(operation, topic):
            raise for_code(TOPIC_AUTHORIZATION_FAILED)(f"{self.principal} may not {operation.name} topic {topic}")

    def check_cluster(self, operation: Operation) -> None:
        """Raise CLUSTER_AUTHORIZATION_FAILED unless ``operation`` on the cluster is allowed."""
        if not self.allowed_cluster(operation):
            raise for_code(CLUSTER_AUTHORIZATION_FAILED)(f"{self.principal} may not {operation.name} the cluster")

    def allowed_cluster(self, operation: Operation) -> bool:
        return self.allowed(operation, ResourceType.CLUSTER, CLUSTER_NAME)

    def allowed_group(self, operation: Operation, group: str) -> bool:
        return self.allowed(operation, ResourceType.GROUP, group)

    def leader(self, topic: str, partition: int, current_leader_epoch: int = -1) -> Replica:
        """The replica this broker leads, or the Kafka error that sends the client elsewhere
        (UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH)."""
        if not self.topics.has_partition(topic, partition):
            raise UnknownTopicOrPartitionError(f"{topic}-{partition} does not exist")
        return self.replicas.leader(topic, partition, current_leader_epoch)

    def partition_log(self, topic: str, partition: int) -> PartitionLog:
        """The log of a partition this broker leads."""
        return self.leader(topic, partition).log

    @property
    def producers(self) -> Idempotence:
        return self.idempotence

    def auto_create(self, topic: str) -> TopicInfo | None:
        """Create ``topic`` with the broker defaults if auto creation is on. None when it is off,
        or (in a cluster) while the creation is under way: callers answer LEADER_NOT_AVAILABLE."""
        if not self.settings.auto_create_topics:
            return None
        if not (self.allowed_cluster(Operation.CREATE) or self.allowed_topic(Operation.CREATE, topic)):
            raise for_code(TOPIC_AUTHORIZATION_FAILED)(f"{self.principal} may not create topic {topic}")
        return self.topics.auto_create(topic, self.settings.num_partitions, self.settings.default_replication_factor)
