"""Topics as the Kafka API handlers see them, over the cluster metadata: the same reads as the lone
broker's ``TopicStore`` (names, ids, partition counts, configs) and the same checks, with writes
that go to the metadata store: creation with rack-aware replica assignment, deletion, added
partitions, config changes, and reassignments (``adding``/``removing`` recorded on the partition;
the controller finishes them once the new replicas are in sync).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace

from tidelog.broker.cluster.assignment import assign
from tidelog.broker.cluster.metadata import Change, ClusterMetadata
from tidelog.broker.cluster.state import PartitionState, TopicState
from tidelog.broker.cluster.topics import TopicInfo, validate_configs, validate_topic_name
from tidelog.broker.log.config import LogConfig
from tidelog.broker.protocol.errors import KafkaError, for_code

log = logging.getLogger(__name__)


def _error(code: int, message: str) -> KafkaError:
    return for_code(code)(message)


def initial_state(replicas: list[int]) -> PartitionState:
    return PartitionState(tuple(replicas), tuple(replicas), replicas[0], 0, 0)


class ClusterCatalog:
    def __init__(self, meta: ClusterMetadata, defaults: LogConfig, min_insync_default: int = 1) -> None:
        self.meta = meta
        self.defaults = defaults
        self.min_insync_default = min_insync_default
        self._infos: dict[str, TopicInfo] | None = None
        self._creating: set[str] = set()
        meta.subscribe(self._changed)

    def _changed(self, change: Change) -> None:
        if change.topics:
            self._infos = None

    @property
    def cluster_id(self) -> str:
        return self.meta.cluster_id

    @property
    def topics(self) -> dict[str, TopicInfo]:
        if self._infos is None:
            self._infos = {
                name: TopicInfo(name, t.topic_id, len(t.partitions), t.replication_factor, dict(t.configs))
                for name, t in self.meta.topics.items()
            }
        return self._infos

    def has_partition(self, topic: str, partition: int) -> bool:
        t = self.meta.topics.get(topic)
        return t is not None and 0 <= partition < len(t.partitions)

    def log_config(self, name: str) -> LogConfig:
        t = self.meta.topics.get(name)
        return LogConfig.from_properties(t.configs, self.defaults) if t else self.defaults

    def min_insync(self, name: str) -> int:
        t = self.meta.topics.get(name)
        value = t.configs.get("min.insync.replicas") if t else None
        return int(value) if value else self.min_insync_default

    def check_create(self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]) -> None:
        validate_topic_name(name)
        if name in self.meta.topics:
            raise _error(36, f"topic {name!r} already exists")
        if partitions < 1:
            raise _error(37, f"number of partitions must be at least 1, got {partitions}")
        if partitions > 100_000:
            raise _error(37, f"number of partitions {partitions} is above this cluster's limit of 100000")
        live = self.meta.live_brokers()
        if replication_factor < 1 or replication_factor > len(live):
            raise _error(
                38, f"replication factor {replication_factor} is larger than the {len(live)} available brokers"
            )
        validate_configs(configs, self.defaults)

    async def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str],
        assignment: list[list[int]] | None = None,
    ) -> TopicInfo:
        if assignment:
            validate_topic_name(name)
            if name in self.meta.topics:
                raise _error(36, f"topic {name!r} already exists")
            _check_assignment(assignment, set(self.meta.brokers))
            validate_configs(configs, self.defaults)
            replicas = assignment
        else:
            self.check_create(name, partitions, replication_factor, configs)
            replicas = assign(self.meta.live_brokers(), partitions, replication_factor)
        state = TopicState(name, uuid.uuid4(), tuple(initial_state(r) for r in replicas), dict(configs))
        if not await self.meta.create_topic(state):
            raise _error(36, f"topic {name!r} already exists")
        log.info("created topic %s: %d partitions, replicas %s", name, len(replicas), replicas)
        return self.topics[name]

    def auto_create(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str] | None = None
    ) -> None:
        """Start creating ``name`` in the background (callers answer LEADER_NOT_AVAILABLE meanwhile)."""
        if name in self._creating or name in self.meta.topics:
            return
        rf = min(replication_factor, max(len(self.meta.live_brokers()), 1))
        self.check_create(name, partitions, rf, configs or {})
        self._creating.add(name)

        async def run() -> None:
            try:
                await self.create_topic(name, partitions, rf, dict(configs or {}))
            except KafkaError as exc:
                log.info("auto-creating %s: %s", name, exc)
            except Exception:
                log.exception("auto-creating %s failed", name)
            finally:
                self._creating.discard(name)

        asyncio.get_running_loop().create_task(run())

    async def delete_topic(self, name: str) -> TopicInfo:
        info = self.topics.get(name)
        if info is None or not await self.meta.delete_topic(name):
            raise _error(3, f"topic {name!r} does not exist")
        return info

    async def create_partitions(
        self, name: str, count: int, validate_only: bool = False, assignment: list[list[int]] | None = None
    ) -> TopicInfo:
        topic = self.meta.topics.get(name)
        if topic is None:
            raise _error(3, f"topic {name!r} does not exist")
        if count <= len(topic.partitions):
            raise _error(37, f"topic {name!r} has {len(topic.partitions)} partitions; the new count must be larger")
        rf = topic.replication_factor
        if assignment:
            _check_assignment(assignment, set(self.meta.brokers))
            new = assignment
        else:
            new = assign(
                self.meta.live_brokers(),
                count - len(topic.partitions),
                rf,
                first_partition=len(topic.partitions),
                existing=[p.replicas for p in topic.partitions],
            )
        if validate_only:
            return self.topics[name]

        def change(t: TopicState) -> TopicState | None:
            if len(t.partitions) >= count:
                return None
            extra = tuple(initial_state(r) for r in new[: count - len(t.partitions)])
            return replace(t, partitions=t.partitions + extra)

        await self.meta.update_topic(name, change)
        return self.topics[name]

    async def alter_configs(self, name: str, configs: dict[str, str], validate_only: bool = False) -> LogConfig:
        if name not in self.meta.topics:
            raise _error(3, f"topic {name!r} does not exist")
        config = validate_configs(configs, self.defaults)
        if not validate_only:
            await self.meta.update_topic(name, lambda t: replace(t, configs=dict(configs)))
        return config

    async def reassign(self, moves: dict[tuple[str, int], list[int]], throttle: int | None = None) -> None:
        """Start (or, with an empty list, cancel) moving partitions to new replica lists."""
        brokers = set(self.meta.brokers)
        live = set(self.meta.live_brokers())
        for (topic, partition), target in moves.items():
            t = self.meta.topics.get(topic)
            if t is None or not 0 <= partition < len(t.partitions):
                raise _error(3, f"{topic}-{partition} does not exist")
            if target:
                _check_assignment([target], brokers)
        for topic in {t for t, _ in moves}:
            mine = {p: r for (t, p), r in moves.items() if t == topic}

            def change(t: TopicState, mine: dict[int, list[int]] = mine) -> TopicState | None:
                parts = list(t.partitions)
                for index, target in mine.items():
                    parts[index] = _reassigned(parts[index], target, live)
                return replace(t, partitions=tuple(parts), throttle_bytes_per_s=throttle or t.throttle_bytes_per_s)

            await self.meta.update_topic(topic, change)


def _reassigned(p: PartitionState, target: list[int], live: set[int]) -> PartitionState:
    if not target:  # cancel: back to the original replicas
        if not p.adding and not p.removing:
            raise _error(85, "no reassignment is in progress for this partition")
        original = tuple(r for r in p.replicas if r not in p.adding)
        return replace(
            p,
            replicas=original,
            isr=tuple(r for r in p.isr if r in original) or p.isr,
            adding=(),
            removing=(),
            partition_epoch=p.partition_epoch + 1,
        )
    base = tuple(r for r in p.replicas if r not in p.adding) if p.adding or p.removing else p.replicas
    if not p.adding and not p.removing and set(target) == set(base):
        # Same replicas, new preference: move leadership now if the new first replica can lead.
        reordered = replace(p, replicas=tuple(target), partition_epoch=p.partition_epoch + 1)
        first = target[0]
        if first != p.leader and first in p.isr and first in live:
            return reordered.with_leader(first, p.isr)
        return reordered
    adding = tuple(r for r in target if r not in base)
    removing = tuple(r for r in base if r not in target)
    replicas = tuple(target) + removing
    return replace(p, replicas=replicas, adding=adding, removing=removing, partition_epoch=p.partition_epoch + 1)


def _check_assignment(assignment: list[list[int]], brokers: set[int]) -> None:
    for replicas in assignment:
        if not replicas or len(set(replicas)) != len(replicas):
            raise _error(39, f"replica list {replicas} is empty or repeats a broker")
        unknown = [r for r in replicas if r not in brokers]
        if unknown:
            raise _error(39, f"replica list {replicas} names brokers that are not registered: {unknown}")
