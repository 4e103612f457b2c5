"""A cluster member whose metadata session is lost (etcd unreachable for longer than the TTL, the
process paused) registers again under the next session: its leased registration went with the old
one, and without it the controller keeps a live broker out of every ISR for good. Producer ids
are unique across the cluster: each broker hands them out from its own range."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tidelog.broker.cluster.memory_store import MemoryBackend, MemoryStore
from tidelog.broker.cluster.metadata import ClusterMetadata
from tidelog.broker.cluster.state import BrokerInfo, broker_key
from tidelog.broker.groups.producer_ids import ProducerIdManager


@pytest.mark.asyncio
async def test_a_lost_session_is_followed_by_a_new_registration() -> None:
    backend = MemoryBackend()
    store, observer = MemoryStore(backend), MemoryStore(backend)
    await store.open()
    await observer.open()
    meta = ClusterMetadata(store)
    try:
        await meta.start()
        await meta.register(BrokerInfo(7, "127.0.0.1", 9092))
        store.expire()  # the registration goes with the session
        for _ in range(100):
            if await observer.get(broker_key(7)) is not None:
                break
            await asyncio.sleep(0.01)
        entry = await observer.get(broker_key(7))
        assert entry is not None, "the broker did not register again after losing its session"
        assert BrokerInfo.decode(entry.value).broker_id == 7
        await meta.deregister(7)
        store.expire()
        await asyncio.sleep(0.05)
        assert await observer.get(broker_key(7)) is None, "a deregistered broker came back"
    finally:
        await meta.close()
        await store.close()
        await observer.close()


def test_producer_ids_are_unique_across_brokers(tmp_path: Path) -> None:
    ids: set[int] = set()
    for node in (0, 1, 2, 3):
        (tmp_path / str(node)).mkdir()
        manager = ProducerIdManager(tmp_path / str(node), node_id=node)
        ids.update(manager.init()[0] for _ in range(3))
    assert len(ids) == 12
    again = ProducerIdManager(tmp_path / "2", node_id=2)
    assert again.init()[0] > max(i for i in ids if i >> 40 == 2), "a restarted broker reused an id"
