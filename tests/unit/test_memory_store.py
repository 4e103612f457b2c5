"""The in-process metadata store (``memory_store``) against the shared conformance suite
(``tests/support/storecontract.py``), plus what only it has: sessions sharing one backend,
``expire()``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from storecontract import StoreContract, StoresFactory, next_batch, summary

from tidelog.broker.cluster.memory_store import MemoryBackend, MemoryStore
from tidelog.broker.cluster.store import MetadataStore, StoreError


@pytest.fixture
def make_stores() -> StoresFactory:
    @contextlib.asynccontextmanager
    async def factory(n: int) -> AsyncIterator[list[MetadataStore]]:
        backend = MemoryBackend()
        stores: list[MetadataStore] = [MemoryStore(backend) for _ in range(n)]
        for store in stores:
            await store.open()
        try:
            yield stores
        finally:
            for store in stores:
                await store.close()

    return factory


class TestMemoryStore(StoreContract):
    expiry_wait_s = 0.0

    async def end_session(self, store: MetadataStore) -> None:
        assert isinstance(store, MemoryStore)
        store.expire()


@pytest.mark.asyncio
async def test_expire_calls_the_hooks_and_later_leases_belong_to_a_new_session() -> None:
    backend = MemoryBackend()
    store, other = MemoryStore(backend, session_ttl_s=2), MemoryStore(backend)
    await store.open()
    await other.open()
    lost: list[str] = []
    store.on_session_lost(lambda: lost.append("lost"))
    await store.put("brokers/1", b"x", leased=True)
    store.expire()
    assert lost == ["lost"]
    assert await other.get("brokers/1") is None
    await store.put("brokers/1", b"again", leased=True)
    await store.close()
    assert await other.get("brokers/1") is None
    await other.close()


@pytest.mark.asyncio
async def test_lease_revocation_is_one_batch_and_close_ends_the_watch() -> None:
    backend = MemoryBackend()
    store, watcher = MemoryStore(backend), MemoryStore(backend)
    await store.open()
    await watcher.open()
    await store.put("b/1", b"1", leased=True)
    await store.put("b/2", b"2", leased=True)
    watch = watcher.watch("b/")
    assert len((await next_batch(watch)).events) == 2
    await store.close()
    batch = await next_batch(watch)
    assert summary(batch) == [("delete", "b/1", None), ("delete", "b/2", None)]
    assert batch.revision == str(backend.revision)
    await watcher.close()
    with pytest.raises(StopAsyncIteration):
        await next_batch(watch)


@pytest.mark.asyncio
async def test_a_closed_store_refuses_calls() -> None:
    store = MemoryStore()
    with pytest.raises(StoreError):
        await store.get("x")
    await store.open()
    await store.put("x", b"1")
    await store.close()
    with pytest.raises(StoreError):
        await store.put("x", b"2")
