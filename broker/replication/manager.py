"""The replica manager: every partition replica this broker holds, kept in line with the cluster
metadata, and the one door through which produce, fetch and admin handlers reach them.

On a metadata change it creates replicas (and their logs) for partitions assigned here, makes each
leader or follower as the partition state says (followers join the fetcher of their leader),
and drops replicas (deleting the log) for partitions moved away or deleted. As leader of a
partition it enforces ``min.insync.replicas`` for ``acks=all``, hands out the waits that release
``acks=all`` producers once the high watermark passes their records, records follower fetches,
and shrinks or expands the ISR itself (compare-and-set on the partition, conditioned on its own
leader epoch, so a deposed leader can never write). The high watermarks are checkpointed in
``replication-offset-checkpoint``.

A lone broker (no metadata store) runs the same code: every partition has one replica, this
broker, which leads it at epoch 0 and whose high watermark is its log end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from tidelog.broker.cluster.metadata import Change, ClusterMetadata
from tidelog.broker.cluster.state import PartitionState, TopicState
from tidelog.broker.cluster.store import StoreError
from tidelog.broker.log import checkpoint
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.log.manager import LogManager
from tidelog.broker.protocol.errors import KafkaError, UnknownTopicOrPartitionError, for_code
from tidelog.broker.replication.epochs import LeaderEpochCache
from tidelog.broker.replication.fetcher import FetchSettings, LeaderFetcher
from tidelog.broker.replication.replica import UNKNOWN, Replica
from tidelog.broker.replication.throttle import ReplicationThrottle

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
HW_CHECKPOINT = "replication-offset-checkpoint"
NOT_LEADER_OR_FOLLOWER = 6
NOT_ENOUGH_REPLICAS = 19
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75


@dataclass(frozen=True, slots=True)
class ReplicationSettings:
    broker_id: int
    replica_lag_time_max_ms: int = 30_000  # replica.lag.time.max.ms
    hw_checkpoint_interval_ms: int = 5_000  # replica.high.watermark.checkpoint.interval.ms
    fetch: FetchSettings | None = None


def _error(code: int, message: str) -> KafkaError:
    return for_code(code)(message)


class ReplicaManager:
    def __init__(
        self,
        settings: ReplicationSettings,
        logs: LogManager,
        meta: ClusterMetadata | None,
        *,
        has_partition: Callable[[str, int], bool],
        min_insync: Callable[[str], int],
        notify: Callable[[str, int], None],
        observe: Callable[[str, object], None] = lambda _name, _value: None,
    ) -> None:
        self.settings = settings
        self.broker_id = settings.broker_id
        self.logs = logs
        self.meta = meta
        self.has_partition = has_partition
        self.min_insync = min_insync
        self.notify = notify
        self.observe = observe
        self.replicas: dict[TopicPartition, Replica] = {}
        self.fetchers: dict[int, LeaderFetcher] = {}
        self.leadership_listeners: list[Callable[[TopicPartition, bool], None]] = []
        # Followers: batches copied from the leader, and truncations (producer state follows both).
        self.copy_listeners: list[Callable[[TopicPartition, PartitionLog, memoryview], None]] = []
        self.truncation_listeners: list[Callable[[TopicPartition, PartitionLog, int], None]] = []
        self._hw_checkpoint = checkpoint.read(logs.data_dir / HW_CHECKPOINT)
        self.throttle = ReplicationThrottle()
        self._configs: dict[str, dict[str, str]] = {}  # topic configs last applied to the logs
        self._tasks: list[asyncio.Task[None]] = []
        logs.set_high_watermark_source(self.high_watermark)

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.meta is not None:
            self.meta.subscribe(self._changed)
            for name in list(self.meta.topics):
                self._apply_topic(name)
            self._tasks.append(loop.create_task(self._isr_loop(), name="isr-maintenance"))
        self._tasks.append(loop.create_task(self._checkpoint_loop(), name="hw-checkpoint"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for fetcher in list(self.fetchers.values()):
            await fetcher.stop()
        self.fetchers.clear()
        self.checkpoint_high_watermarks()

    def checkpoint_high_watermarks(self) -> None:
        hws = {tp: r.high_watermark for tp, r in self.replicas.items()}
        try:
            checkpoint.write(self.logs.io, self.logs.data_dir / HW_CHECKPOINT, hws)
        except OSError as exc:
            log.error("could not write the high watermark checkpoint: %s", exc)

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.hw_checkpoint_interval_ms / 1000)
            self.checkpoint_high_watermarks()

    # --- metadata -> replicas ----------------------------------------------------------------

    def _changed(self, change: Change) -> None:
        for name in change.topics:
            self._apply_topic(name)

    def _apply_topic(self, name: str) -> None:
        assert self.meta is not None
        topic = self.meta.topics.get(name)
        if topic is None:
            self._configs.pop(name, None)
            for tp in [tp for tp in self.replicas if tp[0] == name]:
                self._drop(tp, delete_log=True)
            return
        if self._configs.get(name) != topic.configs:  # not on every ISR or leader change
            self._configs[name] = dict(topic.configs)
            self.logs.update_config(name, self.logs.config_for(name))
        for index, state in enumerate(topic.partitions):
            self._apply_partition(topic, index, state)

    def _apply_partition(self, topic: TopicState, index: int, state: PartitionState) -> None:
        tp = (topic.name, index)
        replica = self.replicas.get(tp)
        if self.broker_id not in state.replicas:
            if replica is not None:
                log.info("%s-%d moved off this broker; deleting its replica", *tp)
                self._drop(tp, delete_log=True)
            return
        if replica is None:
            replica = self._create(tp)
        replica.min_insync = self.min_insync(topic.name)
        became_leader, became_follower = replica.apply(state)
        if became_leader or became_follower:
            self._unfollow(tp)
        if became_leader:
            log.info("%s-%d: leader at epoch %d (ISR %s)", tp[0], tp[1], state.leader_epoch, list(state.isr))
            self.notify(*tp)
        elif became_follower and state.leader >= 0:
            self._fetcher(state.leader).add(replica)
        if became_leader or became_follower:
            for listener in self.leadership_listeners:
                listener(tp, became_leader)

    def _create(self, tp: TopicPartition) -> Replica:
        plog = self.logs.get(*tp) or self.logs.get_or_create(tp[0], tp[1], self.logs.config_for(tp[0]))
        replica = Replica(tp[0], tp[1], self.broker_id, plog, LeaderEpochCache(plog.directory, self.logs.io), UNKNOWN)
        replica.epochs.truncate_from_end(plog.log_end_offset + 1)
        replica.high_watermark = min(self._hw_checkpoint.get(tp, 0), plog.log_end_offset)
        self.replicas[tp] = replica
        return replica

    def _drop(self, tp: TopicPartition, *, delete_log: bool) -> None:
        replica = self.replicas.pop(tp, None)
        self._unfollow(tp)
        if replica is not None:
            replica.fail_waiters(NOT_LEADER_OR_FOLLOWER, f"{tp[0]}-{tp[1]} is no longer on this broker")
            for listener in self.leadership_listeners:
                listener(tp, False)
        if delete_log and self.logs.get(*tp) is not None:
            self.logs.delete(*tp)

    def forget_topic(self, name: str) -> None:
        """A lone broker deleted ``name``: drop its replicas (the caller deletes the logs)."""
        for tp in [tp for tp in self.replicas if tp[0] == name]:
            self._drop(tp, delete_log=False)

    def _fetcher(self, leader: int) -> LeaderFetcher:
        fetcher = self.fetchers.get(leader)
        if fetcher is None:
            settings = self.settings.fetch or FetchSettings(self.broker_id)
            fetcher = LeaderFetcher(leader, self._address, settings, self._follower_appended, self._follower_truncated)
            fetcher.start()
            self.fetchers[leader] = fetcher
        return fetcher

    def _unfollow(self, tp: TopicPartition) -> None:
        for fetcher in self.fetchers.values():
            fetcher.remove(tp)

    def _address(self, broker_id: int) -> tuple[str, int] | None:
        info = self.meta.brokers.get(broker_id) if self.meta is not None else None
        return (info.host, info.port) if info is not None else None

    def _follower_appended(self, replica: Replica, records: memoryview) -> None:
        for listener in self.copy_listeners:
            listener((replica.topic, replica.partition), replica.log, records)

    def _follower_truncated(self, replica: Replica, offset: int) -> None:
        for listener in self.truncation_listeners:
            listener((replica.topic, replica.partition), replica.log, offset)

    # --- what handlers call ------------------------------------------------------------------

    def replica(self, topic: str, partition: int) -> Replica | None:
        replica = self.replicas.get((topic, partition))
        if replica is None and self.meta is None and self.has_partition(topic, partition):
            replica = self._create((topic, partition))
            me = self.broker_id
            replica.apply(PartitionState((me,), (me,), me, 0, 0))
        return replica

    def leader(self, topic: str, partition: int, current_leader_epoch: int = -1) -> Replica:
        """The replica this broker leads, or the Kafka error that sends the client elsewhere."""
        replica = self.replica(topic, partition)
        if replica is None:
            if self.has_partition(topic, partition):
                raise _error(NOT_LEADER_OR_FOLLOWER, f"broker {self.broker_id} holds no replica of {topic}-{partition}")
            raise UnknownTopicOrPartitionError(f"{topic}-{partition} does not exist")
        if current_leader_epoch >= 0:
            if current_leader_epoch < replica.leader_epoch:
                raise _error(FENCED_LEADER_EPOCH, f"leader epoch {current_leader_epoch} < {replica.leader_epoch}")
            if current_leader_epoch > replica.leader_epoch:
                raise _error(UNKNOWN_LEADER_EPOCH, f"leader epoch {current_leader_epoch} > {replica.leader_epoch}")
        if not replica.is_leader:
            raise _error(NOT_LEADER_OR_FOLLOWER, f"broker {self.broker_id} does not lead {topic}-{partition}")
        return replica

    def check_acks_all(self, replica: Replica) -> None:
        if len(replica.state.isr) < replica.min_insync:
            raise _error(
                NOT_ENOUGH_REPLICAS,
                f"{replica.topic}-{replica.partition}: ISR {list(replica.state.isr)} is smaller than "
                f"min.insync.replicas={replica.min_insync}",
            )

    def appended(self, replica: Replica) -> None:
        """The leader appended: move the high watermark (alone in the ISR) and wake fetchers."""
        replica.maybe_advance_high_watermark()
        self.notify(replica.topic, replica.partition)

    def follower_fetched(self, replica_id: int, replica: Replica, fetch_offset: int) -> None:
        if replica.follower_fetched(replica_id, fetch_offset):
            self.notify(replica.topic, replica.partition)
        if replica_id not in replica.state.isr and replica_id in replica.ready_to_join() and self._may_join(replica_id):
            self._schedule_isr_update(replica)

    def throttled(self, replica: Replica, replica_id: int) -> tuple[int, bool] | None:
        """(bytes allowed, whole batch allowed) when ``replica_id`` is being added to a throttled
        reassignment of this partition; None when it is not throttled."""
        if self.meta is None or replica_id not in replica.state.adding:
            return None
        topic = self.meta.topics.get(replica.topic)
        if topic is None or topic.throttle_bytes_per_s <= 0:
            return None
        return self.throttle.allowance(replica.topic, topic.throttle_bytes_per_s)

    def stats(self) -> tuple[int, int, int, int]:
        """(replicas held, partitions led, under-replicated led, under min ISR led)."""
        led = [r for r in self.replicas.values() if r.is_leader]
        under = sum(1 for r in led if len(r.state.isr) < len(r.state.target_replicas))
        below = sum(1 for r in led if len(r.state.isr) < r.min_insync)
        return len(self.replicas), len(led), under, below

    def high_watermark(self, tp: TopicPartition) -> int:
        replica = self.replicas.get(tp)
        if replica is not None:
            return replica.high_watermark
        plog = self.logs.get(*tp)
        return plog.log_end_offset if plog is not None and self.meta is None else 0

    def partition_log(self, topic: str, partition: int) -> PartitionLog | None:
        replica = self.replica(topic, partition)
        return replica.log if replica is not None else None

    # --- ISR maintenance (leaders) ---------------------------------------------------------------

    async def _isr_loop(self) -> None:
        interval = max(self.settings.replica_lag_time_max_ms / 2000, 0.05)
        while True:
            await asyncio.sleep(interval)
            for replica in list(self.replicas.values()):
                if replica.is_leader and (
                    replica.out_of_sync(self.settings.replica_lag_time_max_ms) or replica.ready_to_join()
                ):
                    self._schedule_isr_update(replica)

    def _may_join(self, broker_id: int) -> bool:
        return self.meta is not None and broker_id in self.meta.live_brokers()

    def _schedule_isr_update(self, replica: Replica) -> None:
        if replica.isr_change_pending or self.meta is None:
            return
        replica.isr_change_pending = True
        task = asyncio.get_running_loop().create_task(self._update_isr(replica))
        task.add_done_callback(lambda _t: setattr(replica, "isr_change_pending", False))

    async def _update_isr(self, replica: Replica) -> None:
        assert self.meta is not None
        lag = self.settings.replica_lag_time_max_ms
        drop = set(replica.out_of_sync(lag))
        # Never back into the ISR: brokers that are not registered or are shutting down (the
        # controller takes them out; adding them back would flap).
        join = set(replica.ready_to_join()) & set(self.meta.live_brokers())
        if not drop and not join:
            return
        epoch = replica.leader_epoch
        index = replica.partition

        def change(topic: TopicState) -> TopicState | None:
            if index >= len(topic.partitions):
                return None
            p = topic.partitions[index]
            if p.leader != self.broker_id or p.leader_epoch != epoch:
                return None  # deposed meanwhile: not ours to change
            isr = tuple(r for r in p.isr if r not in drop) + tuple(
                r for r in p.replicas if r in join and r not in p.isr
            )
            if set(isr) == set(p.isr):
                return None
            return topic.with_partition(index, p.with_isr(isr))

        before = list(replica.state.isr)
        try:
            written = await self.meta.update_topic(replica.topic, change)
        except StoreError as exc:
            log.warning("%s-%d: ISR change not written: %s", replica.topic, index, exc)
            return
        if written is not None:
            new = written.partitions[index]
            log.info("%s-%d: ISR %s -> %s", replica.topic, index, before, list(new.isr))
            self.observe("isr", (len(set(before) - set(new.isr)), len(set(new.isr) - set(before))))
            self._apply_partition(written, index, new)
