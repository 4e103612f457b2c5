"""``ClusterAdmin`` over the cluster metadata: what the gRPC Admin service (and through it the CLI
and the operator) asks of a running cluster. Topic changes go through the same ``ClusterCatalog``
the Kafka admin APIs use; drain and rebalance compute their plans with the pure functions of
``cluster.assignment`` and start them as reassignments, which the controller completes once the new
replicas are in sync; ``can_restart`` is Strimzi's KafkaRoller rule: a broker may restart only if
no partition it holds in-sync would drop below ``min.insync.replicas`` (or lose its last leader).
"""

from __future__ import annotations

from collections import Counter

from tidelog.broker.admin.access_admin import AccessAdmin
from tidelog.broker.admin.model import (
    BrokerDesc,
    ClusterDesc,
    Move,
    PartitionDesc,
    Plan,
    ReassignmentDesc,
    RestartCheck,
    TopicDesc,
)
from tidelog.broker.cluster.assignment import drain_moves, rebalance_moves
from tidelog.broker.cluster.catalog import ClusterCatalog
from tidelog.broker.cluster.metadata import ClusterMetadata
from tidelog.broker.cluster.state import TopicState
from tidelog.broker.protocol.errors import KafkaError, for_code

UNKNOWN_TOPIC = 3
INVALID_REPLICATION_FACTOR = 38


def _error(code: int, message: str) -> KafkaError:
    return for_code(code)(message)


def _describe(t: TopicState) -> TopicDesc:
    return TopicDesc(
        t.name,
        str(t.topic_id),
        dict(t.configs),
        [
            PartitionDesc(i, p.leader, p.leader_epoch, list(p.replicas), list(p.isr), list(p.adding), list(p.removing))
            for i, p in enumerate(t.partitions)
        ],
    )


class MetadataAdmin(AccessAdmin):
    """The cluster operations, answered from (and written to) the metadata store; users and ACLs
    through ``AccessAdmin`` (``credentials``: the CredentialStore, ``acls``: the AclStore or None)."""

    def __init__(
        self, meta: ClusterMetadata, catalog: ClusterCatalog, credentials: object = None, acls: object = None
    ) -> None:
        super().__init__(credentials, acls)
        self.meta = meta
        self.catalog = catalog

    def _topic(self, name: str) -> TopicState:
        t = self.meta.topics.get(name)
        if t is None:
            raise _error(UNKNOWN_TOPIC, f"topic {name!r} does not exist")
        return t

    async def describe_cluster(self) -> ClusterDesc:
        brokers = [
            BrokerDesc(b.broker_id, b.host, b.port, b.rack, True, "shutting_down" if b.shutting_down else "running")
            for b in sorted(self.meta.brokers.values(), key=lambda b: b.broker_id)
        ]
        known = set(self.meta.brokers)
        for t in self.meta.topics.values():
            for p in t.partitions:
                known.update(p.replicas)
        brokers += [BrokerDesc(b, "", -1, None, False, "offline") for b in sorted(known - set(self.meta.brokers))]
        parts = [p for t in self.meta.topics.values() for p in t.partitions]
        under = sum(1 for p in parts if len(p.isr) < len(p.target_replicas))
        offline = sum(1 for p in parts if p.leader not in self.meta.brokers)
        controller = self.meta.controller.broker_id if self.meta.controller is not None else -1
        return ClusterDesc(self.meta.cluster_id, controller, brokers, under, offline)

    async def list_topics(self) -> list[str]:
        return sorted(self.meta.topics)

    async def describe_topic(self, name: str) -> TopicDesc:
        return _describe(self._topic(name))

    async def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str],
        assignment: list[list[int]] | None = None,
        validate_only: bool = False,
    ) -> TopicDesc:
        live = len(self.meta.live_brokers())
        partitions = 1 if partitions == -1 else partitions
        replication_factor = min(3, live) if replication_factor == -1 else replication_factor
        if validate_only:
            self.catalog.check_create(name, partitions, replication_factor, configs)
            return TopicDesc(name, "", dict(configs), [])
        await self.catalog.create_topic(name, partitions, replication_factor, configs, assignment)
        return _describe(self._topic(name))

    async def alter_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        replication_factor: int | None = None,
        set_configs: dict[str, str] | None = None,
        delete_configs: list[str] | None = None,
    ) -> TopicDesc:
        t = self._topic(name)
        if set_configs or delete_configs:
            configs = dict(t.configs) | dict(set_configs or {})
            for key in delete_configs or []:
                configs.pop(key, None)
            await self.catalog.alter_configs(name, configs)
        if partitions is not None and partitions != len(t.partitions):
            await self.catalog.create_partitions(name, partitions)
        if replication_factor is not None and replication_factor != t.replication_factor:
            await self.catalog.reassign(self._resized(self._topic(name), replication_factor))
        return _describe(self._topic(name))

    def _resized(self, t: TopicState, rf: int) -> dict[tuple[str, int], list[int]]:
        live = self.meta.live_brokers()
        if not 1 <= rf <= len(live):
            raise _error(INVALID_REPLICATION_FACTOR, f"replication factor {rf} needs 1..{len(live)} brokers")
        load = Counter(r for p in t.partitions for r in p.target_replicas)
        moves: dict[tuple[str, int], list[int]] = {}
        for i, p in enumerate(t.partitions):
            replicas = list(p.target_replicas)[:rf]
            while len(replicas) < rf:
                extra = min((b for b in live if b not in replicas), key=lambda b: (load[b], b))
                load[extra] += 1
                replicas.append(extra)
            moves[(t.name, i)] = replicas
        return moves

    async def delete_topic(self, name: str) -> None:
        await self.catalog.delete_topic(name)

    async def reassign(self, moves: list[Move], throttle_bytes_per_s: int | None = None) -> None:
        await self.catalog.reassign({(m.topic, m.partition): list(m.replicas) for m in moves}, throttle_bytes_per_s)

    async def list_reassignments(self) -> list[ReassignmentDesc]:
        return [
            ReassignmentDesc(t.name, i, list(p.replicas), list(p.adding), list(p.removing))
            for t in sorted(self.meta.topics.values(), key=lambda t: t.name)
            for i, p in enumerate(t.partitions)
            if p.adding or p.removing
        ]

    def _placement(self) -> dict[tuple[str, int], list[int]]:
        return {
            (t.name, i): list(p.target_replicas) for t in self.meta.topics.values() for i, p in enumerate(t.partitions)
        }

    async def drain(self, broker_id: int) -> Plan:
        if broker_id not in self.meta.brokers and not any(broker_id in r for r in self._placement().values()):
            raise _error(INVALID_REPLICATION_FACTOR, f"broker {broker_id} is unknown and holds no replicas")
        brokers = {b: r for b, r in self.meta.live_brokers().items() if b != broker_id}
        moves = drain_moves(self._placement(), broker_id, brokers | {broker_id: None})
        await self.catalog.reassign(moves)
        leaders = sum(1 for (t, i) in moves if self.meta.topics[t].partitions[i].leader == broker_id)
        return Plan([Move(t, i, r) for (t, i), r in moves.items()], leaders)

    async def rebalance(self) -> Plan:
        placement = self._placement()
        moves = rebalance_moves(placement, self.meta.live_brokers())
        await self.catalog.reassign(moves)
        leaders = sum(1 for tp, r in moves.items() if r[0] != placement[tp][0])
        return Plan([Move(t, i, r) for (t, i), r in moves.items()], leaders)

    async def can_restart(self, broker_id: int) -> RestartCheck:
        reasons: list[str] = []
        live = set(self.meta.brokers)
        for t in sorted(self.meta.topics.values(), key=lambda t: t.name):
            min_isr = self.catalog.min_insync(t.name)
            for i, p in enumerate(t.partitions):
                if broker_id not in p.replicas:
                    continue
                isr_after = [r for r in p.isr if r != broker_id and r in live]
                if broker_id in p.isr and len(isr_after) < min_isr:
                    reasons.append(
                        f"{t.name}-{i}: ISR {list(p.isr)} would drop to {len(isr_after)} < "
                        f"min.insync.replicas={min_isr}"
                    )
                elif p.leader == broker_id and not isr_after:
                    reasons.append(f"{t.name}-{i}: no other in-sync replica could take over leadership")
        return RestartCheck(broker_id, not reasons, reasons)
