"""Cluster metadata over a shared in-memory store (several sessions, as several brokers): producer
id blocks are never handed out twice, concurrent compare-and-set writers never lose each other's
changes, and the controller role moves to another broker when the controller's session ends."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tidelog.broker.cluster.controller import Controller
from tidelog.broker.cluster.memory_store import MemoryBackend, MemoryStore
from tidelog.broker.cluster.metadata import ClusterMetadata
from tidelog.broker.cluster.state import BrokerInfo, PartitionState, TopicState


async def _member(backend: MemoryBackend) -> tuple[MemoryStore, ClusterMetadata]:
    store = MemoryStore(backend)
    await store.open()
    meta = ClusterMetadata(store)
    await meta.start()
    return store, meta


@pytest.mark.asyncio
async def test_producer_id_blocks_are_disjoint() -> None:
    backend = MemoryBackend()
    members = [await _member(backend) for _ in range(3)]
    starts = await asyncio.gather(*(m.allocate_producer_ids(100) for _s, m in members for _ in range(5)))
    assert len(set(starts)) == 15
    assert sorted(starts) == list(range(0, 1500, 100))
    for store, meta in members:
        await meta.close()
        await store.close()


@pytest.mark.asyncio
async def test_concurrent_topic_updates_are_all_kept() -> None:
    backend = MemoryBackend()
    (s1, a), (s2, b) = await _member(backend), await _member(backend)
    parts = tuple(PartitionState((1, 2), (1, 2), 1) for _ in range(20))
    assert await a.create_topic(TopicState("t", uuid.uuid4(), parts))
    await asyncio.sleep(0.01)

    def shrink(index: int) -> object:
        return lambda t: t.with_partition(index, t.partitions[index].with_isr((1,)))

    await asyncio.gather(*(m.update_topic("t", shrink(i)) for i in range(20) for m in (a, b) if i % 2 == (m is b)))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    for meta in (a, b):
        assert all(p.isr == (1,) for p in meta.topics["t"].partitions)
    for store, meta in ((s1, a), (s2, b)):
        await meta.close()
        await store.close()


@pytest.mark.asyncio
async def test_controller_moves_when_its_session_ends() -> None:
    backend = MemoryBackend()
    members = [await _member(backend) for _ in range(2)]
    controllers = []
    for broker_id, (_store, meta) in enumerate(members, 1):
        await meta.register(BrokerInfo(broker_id, "127.0.0.1", 9000 + broker_id))
        controller = Controller(meta, broker_id, imbalance_interval_s=3600)
        controller.start()
        controllers.append(controller)

    async def active() -> list[int]:
        for _ in range(200):
            ids = [c.broker_id for c in controllers if c.active]
            if len(ids) == 1 and all(m.controller is not None for _s, m in members):
                return ids
            await asyncio.sleep(0.01)
        return [c.broker_id for c in controllers if c.active]

    first = await active()
    assert len(first) == 1
    epoch = members[0][1].controller.epoch  # type: ignore[union-attr]
    members[first[0] - 1][0].expire()  # its controller key (and registration) go with the session
    # A new election follows (either broker may win: the old one's process is still alive).
    for _ in range(300):
        held = [m.controller for _s, m in members]
        if all(h is not None and h.epoch > epoch for h in held):
            break
        await asyncio.sleep(0.01)
    holders = {m.controller.broker_id for _s, m in members if m.controller is not None}
    assert len(holders) == 1
    await asyncio.sleep(0.1)
    assert [c.broker_id for c in controllers if c.active] == list(holders)
    for c in controllers:
        await c.stop()
    for store, meta in members:
        await meta.close()
        await store.close()


@pytest.mark.asyncio
async def test_a_controller_stops_even_when_woken_as_it_is_cancelled() -> None:
    """Python 3.11's wait_for swallowed a cancellation that met a wake-up: stop() then hung for ever
    (a drained broker in a pod was killed only by its grace period)."""
    _store, meta = await _member(MemoryBackend())
    await meta.register(BrokerInfo(1, "127.0.0.1", 9001))
    controller = Controller(meta, 1, imbalance_interval_s=3600)
    controller.start()
    for _ in range(100):
        if controller.active:
            break
        await asyncio.sleep(0.02)
    assert controller.active
    await asyncio.sleep(0.1)  # idle in its wait for a wake-up
    controller.preferred_election_now()  # the wake-up completes in the same loop turn as the cancel
    stopping = asyncio.ensure_future(controller.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert stopping in done, "Controller.stop() did not return"
    assert not controller.active
