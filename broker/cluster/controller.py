"""The controller: one broker, elected through the store, that decides partition leadership.

It holds the leased ``controller`` key while its session lives; every other broker waits for the
key to go and campaigns again. While active it reconciles every partition against the live
brokers: a leader that died or is shutting down is replaced by the first live in-sync replica
(``unclean.leader.election.enable`` lets an out-of-sync replica lead when none is left); dead
followers leave the ISR; an offline partition comes back when its last in-sync replica returns;
reassignments finish once every added replica is in sync; and, every
``leader.imbalance.check.interval.seconds``, leadership moves back to preferred replicas.

Partition leaders change their own ISR (compare-and-set on the partition's leader epoch, in
``replication``); the controller never races them blindly: every write is compare-and-set.
Neighbours: ``metadata`` (cache and writes), ``decide`` below (the pure rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace

from tidelog.broker.cluster.metadata import Change, ClusterMetadata
from tidelog.broker.cluster.state import NO_LEADER, PartitionState, TopicState
from tidelog.broker.cluster.store import StoreError

log = logging.getLogger(__name__)


def _unclean(topic: TopicState, default: bool) -> bool:
    value = topic.configs.get("unclean.leader.election.enable")
    return default if value is None else value == "true"


def decide(
    p: PartitionState,
    registered: set[int],
    live: set[int],
    *,
    unclean: bool,
    preferred: bool,
    restarted: frozenset[int] = frozenset(),
) -> PartitionState:
    """The partition as it should be, given the registered brokers and those of them not shutting
    down (``live``). ``restarted``: brokers whose process changed since the controller last looked
    (a quick restart the session outlived): their replicas may have lost an unflushed tail, so they
    are treated as new followers, and a partition they led gets a new leader epoch. Pure: the
    controller writes the result if it differs."""
    # Dead or restarted followers leave the ISR; the ISR never empties (the last member keeps its claim).
    isr = tuple(r for r in p.isr if r in registered and r not in restarted) or p.isr
    if p.leader in restarted:
        others = [r for r in p.replicas if r in isr and r in live and r != p.leader]
        if others:
            return p.with_leader(others[0], tuple(r for r in isr if r in live))
        if p.leader in live:
            return p.with_leader(p.leader, (p.leader,))
    if p.leader in live and p.leader in isr:
        # Shutting-down followers leave the ISR too, so acks=all stops waiting for them.
        isr = tuple(r for r in isr if r in live or r == p.leader)
        state = p if isr == p.isr else p.with_isr(isr)
        if p.adding and all(r in isr for r in p.adding):
            state = _finish_reassignment(state)
        if preferred and state.replicas and state.leader != state.replicas[0]:
            first = state.replicas[0]
            if first in live and first in state.isr and first not in state.removing:
                state = state.with_leader(first, state.isr)
        return state
    candidates = [r for r in p.replicas if r in isr and r in live and r not in p.removing]
    if not candidates:
        candidates = [r for r in p.replicas if r in isr and r in live]
    if candidates:
        leader = candidates[0]
        return p.with_leader(leader, tuple(r for r in isr if r in live or r == leader))
    if unclean:
        others = [r for r in p.replicas if r in live]
        if others:
            log.warning("unclean leader election: %d leads without being in sync (ISR was %s)", others[0], p.isr)
            return p.with_leader(others[0], (others[0],))
    if p.leader != NO_LEADER and p.leader not in registered:
        # Offline: no in-sync replica is alive. Keep the ISR so its members can lead on return.
        return replace(p, leader=NO_LEADER, leader_epoch=p.leader_epoch + 1, partition_epoch=p.partition_epoch + 1)
    return p


def _finish_reassignment(p: PartitionState) -> PartitionState:
    target = p.target_replicas
    isr = tuple(r for r in p.isr if r in target)
    done = replace(p, replicas=target, adding=(), removing=(), isr=isr, partition_epoch=p.partition_epoch + 1)
    if p.leader not in target:
        done = done.with_leader(next(r for r in target if r in isr), isr)
    return done


class Controller:
    """Campaigns for the controller key and, while holding it, reconciles partitions."""

    def __init__(
        self,
        meta: ClusterMetadata,
        broker_id: int,
        *,
        unclean_default: bool = False,
        imbalance_interval_s: float = 300.0,
        auto_leader_rebalance: bool = True,
    ) -> None:
        self.meta = meta
        self.broker_id = broker_id
        self.unclean_default = unclean_default
        self.imbalance_interval_s = imbalance_interval_s
        self.auto_leader_rebalance = auto_leader_rebalance
        self.active = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_preferred = 0.0
        self._incarnations: dict[int, str] = {}
        meta.subscribe(self._changed)

    def _changed(self, change: Change) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="controller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.active:
            self.active = False
            with contextlib.suppress(StoreError):
                await self.meta.resign(self.broker_id)

    def preferred_election_now(self) -> None:
        self._next_preferred = 0.0
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.warning("controller: metadata store unavailable (%s); retrying", exc)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("controller step failed; retrying")
                await asyncio.sleep(0.5)

    async def _step(self) -> None:
        self._wake.clear()
        holder = self.meta.controller
        if self.active and (holder is None or holder.broker_id != self.broker_id):
            log.warning("broker %d is no longer the controller", self.broker_id)
            self.active = False
        if holder is None:
            epoch = await self.meta.campaign(self.broker_id)
            if epoch is not None:
                log.info("broker %d is now the controller (epoch %d)", self.broker_id, epoch)
                self.active = True
                self._next_preferred = time.monotonic() + self.imbalance_interval_s
        if self.active:
            await self.reconcile()
        timeout = max(self._next_preferred - time.monotonic(), 0.05) if self.active else 1.0
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that arrives
        # as the wake-up does, and stop() then waited for this loop forever (a broker that never exited).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(timeout, 5.0)):
                await self._wake.wait()

    async def reconcile(self) -> int:
        """Bring every partition to ``decide``'s answer; returns how many topics were written."""
        registered = set(self.meta.brokers)
        live = set(self.meta.live_brokers())
        restarted = frozenset(
            b.broker_id
            for b in self.meta.brokers.values()
            if self._incarnations.get(b.broker_id, b.incarnation) != b.incarnation
        )
        preferred = False
        if self.auto_leader_rebalance and time.monotonic() >= self._next_preferred:
            preferred = True
            self._next_preferred = time.monotonic() + self.imbalance_interval_s
        written = 0
        for name, topic in list(self.meta.topics.items()):
            unclean = _unclean(topic, self.unclean_default)

            def change(t: TopicState, unclean: bool = unclean) -> TopicState | None:
                parts = tuple(decide(p, registered, live, unclean=unclean, preferred=preferred) for p in t.partitions)
                return None if parts == t.partitions else replace(t, partitions=parts)

            if change(topic) is not None and await self.meta.update_topic(name, change) is not None:
                written += 1
        if restarted:
            log.info("brokers %s restarted: their replicas rejoin the ISR once caught up", sorted(restarted))
        # Only now: a failed write above leaves the restart to be handled on the next pass.
        self._incarnations = {b.broker_id: b.incarnation for b in self.meta.brokers.values()}
        return written
