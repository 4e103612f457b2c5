"""One partition as this broker holds it: leader or follower, its log, its leader epoch cache,
and the high watermark.

As leader it tracks each follower's log end offset (from the offsets they fetch at) and when each
was last caught up, moves the high watermark to the smallest log end offset in the ISR, says which
followers fell out of sync (``replica.lag.time.max.ms``) and which caught up enough to rejoin, and
releases ``acks=all`` producers once the high watermark passes their records. As follower it
keeps the high watermark the leader sends (never above its own log end). Changes of leadership
and ISR arrive from the cluster metadata as ``PartitionState`` values (``apply``); this class
never writes metadata itself (``manager`` does).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from tidelog.broker.cluster.state import NO_LEADER, PartitionState
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.protocol.errors import KafkaError, for_code
from tidelog.broker.replication.epochs import LeaderEpochCache

NOT_LEADER_OR_FOLLOWER = 6
NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
UNKNOWN = PartitionState((), (), NO_LEADER, -1, -1)


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass(slots=True)
class FollowerState:
    log_end_offset: int = -1
    last_fetch_ms: int = 0
    last_caught_up_ms: int = 0
    leader_end_at_last_fetch: int = -1


@dataclass(slots=True)
class _Waiter:
    offset: int  # the high watermark that releases it (last offset + 1)
    future: asyncio.Future[None]


@dataclass(slots=True)
class Replica:
    topic: str
    partition: int
    broker_id: int
    log: PartitionLog
    epochs: LeaderEpochCache
    state: PartitionState
    high_watermark: int = 0
    min_insync: int = 1
    followers: dict[int, FollowerState] = field(default_factory=dict)
    waiters: list[_Waiter] = field(default_factory=list)
    leader_epoch_start: int = 0  # log end offset when this broker became leader in this epoch
    isr_change_pending: bool = False

    @property
    def is_leader(self) -> bool:
        return self.state.leader == self.broker_id

    @property
    def leader_epoch(self) -> int:
        return self.state.leader_epoch

    # --- state changes from metadata --------------------------------------------------------

    def apply(self, state: PartitionState) -> tuple[bool, bool]:
        """Take the partition's new state; returns (became leader, became follower). A new replica
        starts from ``UNKNOWN`` (epoch -1), so its first state is always a change."""
        old = self.state
        self.state = state
        became_leader = state.leader == self.broker_id and (
            old.leader != self.broker_id or old.leader_epoch != state.leader_epoch
        )
        became_follower = state.leader != self.broker_id and (
            old.leader == self.broker_id or old.leader_epoch != state.leader_epoch
        )
        if became_leader:
            self._become_leader()
        elif became_follower:
            self.followers.clear()
            self.fail_waiters(NOT_LEADER_OR_FOLLOWER, "leadership moved while waiting for replication")
        elif self.is_leader:
            self._track_replicas(old)
            if len(state.isr) < self.min_insync:
                self.fail_waiters(
                    NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                    f"the ISR shrank to {len(state.isr)}, below min.insync.replicas={self.min_insync}",
                )
            self.maybe_advance_high_watermark()
        return became_leader, became_follower

    def _become_leader(self) -> None:
        leo = self.log.log_end_offset
        self.epochs.assign(self.state.leader_epoch, leo)
        self.leader_epoch_start = leo
        now = now_ms()
        self.followers = {
            r: FollowerState(last_caught_up_ms=now if r in self.state.isr else 0)
            for r in self.state.replicas
            if r != self.broker_id
        }
        self.high_watermark = min(self.high_watermark, leo)
        self.maybe_advance_high_watermark()

    def _track_replicas(self, old: PartitionState) -> None:
        """Follow replica set changes. A replica that joins (again) starts unknown: what an earlier
        replica on that broker fetched says nothing about the new one (it may start empty)."""
        now = now_ms()
        joined = (set(self.state.replicas) - set(old.replicas)) | (set(self.state.adding) - set(old.adding))
        # A follower put out of the ISR (dead, restarted, lagging) rejoins only on fresh fetches.
        joined |= set(old.isr) - set(self.state.isr)
        for r in self.state.replicas:
            if r != self.broker_id and (r not in self.followers or r in joined):
                self.followers[r] = FollowerState(last_caught_up_ms=now if r in self.state.isr else 0)
                self.followers[r].leader_end_at_last_fetch = -1
        for r in list(self.followers):
            if r not in self.state.replicas:
                del self.followers[r]

    # --- leader side ------------------------------------------------------------------------

    def follower_fetched(self, replica_id: int, fetch_offset: int) -> bool:
        """A follower fetched at ``fetch_offset`` (= its log end). True if the high watermark moved."""
        f = self.followers.get(replica_id)
        if f is None:
            return False
        now = now_ms()
        leo = self.log.log_end_offset
        if fetch_offset >= leo:
            f.last_caught_up_ms = now
        elif fetch_offset >= f.leader_end_at_last_fetch >= 0:
            f.last_caught_up_ms = max(f.last_caught_up_ms, f.last_fetch_ms)
        f.log_end_offset = fetch_offset
        f.last_fetch_ms = now
        f.leader_end_at_last_fetch = leo
        return self.maybe_advance_high_watermark()

    def maybe_advance_high_watermark(self) -> bool:
        if not self.is_leader:
            return False
        hw = self.log.log_end_offset
        for r in self.state.isr:
            if r == self.broker_id:
                continue
            f = self.followers.get(r)
            hw = min(hw, f.log_end_offset if f is not None else -1)
        # A new leader's high watermark only moves once it reaches this epoch's first offset.
        if hw > self.high_watermark and (hw >= self.leader_epoch_start or len(self.state.isr) == 1):
            self.high_watermark = hw
            self._release_waiters()
            return True
        return False

    def out_of_sync(self, lag_ms: int) -> list[int]:
        now = now_ms()
        return [
            r
            for r in self.state.isr
            if r != self.broker_id and now - self.followers.get(r, FollowerState()).last_caught_up_ms > lag_ms
        ]

    def ready_to_join(self) -> list[int]:
        """Followers outside the ISR that caught up to the high watermark in this epoch."""
        return [
            r
            for r, f in self.followers.items()
            if r not in self.state.isr
            and r not in self.state.removing
            and f.log_end_offset >= self.high_watermark
            and f.log_end_offset >= self.leader_epoch_start
        ]

    def wait_for(self, offset: int) -> asyncio.Future[None]:
        """A future that completes when the high watermark reaches ``offset``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.high_watermark >= offset:
            future.set_result(None)
        else:
            self.waiters.append(_Waiter(offset, future))
        return future

    def _release_waiters(self) -> None:
        if not self.waiters:
            return
        keep: list[_Waiter] = []
        for w in self.waiters:
            if w.future.done():
                continue
            if self.high_watermark >= w.offset:
                w.future.set_result(None)
            else:
                keep.append(w)
        self.waiters = keep

    def fail_waiters(self, code: int, message: str) -> None:
        error: KafkaError = for_code(code)(message)
        for w in self.waiters:
            if not w.future.done():
                w.future.set_exception(error)
        self.waiters = []

    # --- follower side ----------------------------------------------------------------------

    def follower_high_watermark(self, leader_hw: int) -> None:
        self.high_watermark = max(self.high_watermark, min(leader_hw, self.log.log_end_offset))

    def truncate_to(self, offset: int) -> None:
        if offset < self.log.log_end_offset:
            self.log.truncate_to(offset)
        self.epochs.truncate_from_end(self.log.log_end_offset)
        self.high_watermark = min(self.high_watermark, self.log.log_end_offset)

    @property
    def leader_id(self) -> int:
        return self.state.leader if self.state.leader != NO_LEADER else -1
