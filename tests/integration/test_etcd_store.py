"""The etcd metadata store (``etcd_store``) against a real etcd (``etcdserver``): the shared
conformance suite (``storecontract``) plus faults only a real server has: restarts under an open
watch, a frozen server outliving the session, compaction, an unreachable endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc.aio
import pytest
from aetcd import rpc  # type: ignore[import-untyped]
from etcdserver import EtcdServer, etcd_server
from storecontract import StoreContract, StoresFactory, close_watch, eventually, next_batch, summary
from tidelogbroker import free_port

from tidelog.broker.cluster.etcd_store import EtcdStore
from tidelog.broker.cluster.store import MetadataStore, StoreError, WatchBatch

TTL_S = 2.0


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    with etcd_server(tmp_path) as server:
        yield server


def new_root() -> str:
    return f"/tidelog/test-{uuid.uuid4().hex[:12]}/"


@contextlib.asynccontextmanager
async def open_stores(
    server: EtcdServer, n: int, root: str | None = None, ttl_s: float = TTL_S
) -> AsyncIterator[list[EtcdStore]]:
    root = root or new_root()
    stores = [EtcdStore(server.endpoints, root, session_ttl_s=ttl_s) for _ in range(n)]
    try:
        for store in stores:
            await store.open()
        yield stores
    finally:
        for store in stores:
            await store.close()


@pytest.fixture
def make_stores(shared_etcd: EtcdServer) -> StoresFactory:
    @contextlib.asynccontextmanager
    async def factory(n: int) -> AsyncIterator[list[MetadataStore]]:
        async with open_stores(shared_etcd, n) as stores:
            yield list(stores)

    return factory


class TestEtcdStore(StoreContract):
    expiry_wait_s = TTL_S * 3

    async def end_session(self, store: MetadataStore) -> None:
        assert isinstance(store, EtcdStore)
        await store.abandon()


async def batches_until_reset(watch: AsyncIterator[WatchBatch], timeout_s: float) -> WatchBatch:
    while True:
        batch = await next_batch(watch, timeout_s)
        if batch.reset:
            return batch


@pytest.mark.asyncio
async def test_watch_resumes_with_a_reset_batch_after_etcd_restarts(own_etcd: EtcdServer) -> None:
    async with open_stores(own_etcd, 1) as (store,):
        await store.put("topics/a", b"1")
        watch = store.watch("topics/")
        try:
            assert summary(await next_batch(watch)) == [("put", "topics/a", b"1")]
            await store.put("topics/b", b"2")
            assert summary(await next_batch(watch)) == [("put", "topics/b", b"2")]
            await asyncio.to_thread(own_etcd.stop)
            with pytest.raises(StoreError, match="etcd"):
                await store.get("topics/a")
            await asyncio.to_thread(own_etcd.start)
            await store.put("topics/c", b"3")
            reset = await batches_until_reset(watch, 15)
            listed = {key for _, key, _ in summary(reset)}
            assert {"topics/a", "topics/b"} <= listed
            if "topics/c" not in listed:
                assert summary(await next_batch(watch)) == [("put", "topics/c", b"3")]
            await store.delete("topics/a")
            assert summary(await next_batch(watch)) == [("delete", "topics/a", None)]
        finally:
            await close_watch(watch)


@pytest.mark.asyncio
async def test_the_session_survives_a_quick_restart(own_etcd: EtcdServer) -> None:
    # A 10 s session: etcd's restart takes 1-3 s on a loaded 2-core machine, which must stay "quick".
    ttl = 10.0
    async with open_stores(own_etcd, 1, ttl_s=ttl) as (store,):
        lost: list[bool] = []
        store.on_session_lost(lambda: lost.append(True))
        await store.put("brokers/1", b"me", leased=True)
        started = time.monotonic()
        await asyncio.to_thread(own_etcd.stop)
        await asyncio.to_thread(own_etcd.start)
        took = time.monotonic() - started
        assert took < ttl / 2, f"etcd took {took:.1f}s to restart: not a quick restart"
        await asyncio.sleep(TTL_S * 2)
        assert lost == []
        assert await store.get("brokers/1") is not None


@pytest.mark.asyncio
async def test_session_lost_when_etcd_is_frozen_longer_than_the_ttl(own_etcd: EtcdServer) -> None:
    root = new_root()
    async with open_stores(own_etcd, 1, root) as (store,):
        lost = asyncio.Event()
        store.on_session_lost(lost.set)
        await store.put("brokers/1", b"me", leased=True)
        await store.put("topics/a", b"kept")
        own_etcd.pause()
        try:
            await asyncio.wait_for(lost.wait(), TTL_S * 3)
        finally:
            own_etcd.resume()

        async def gone() -> bool:
            return await store.get("brokers/1") is None

        await eventually(gone, TTL_S * 5, "the lost session's leased key is deleted")
        assert await store.get("topics/a") is not None
        # a new session: leased keys written now stay while it is kept alive
        await store.put("brokers/1", b"me again", leased=True)
        await asyncio.sleep(TTL_S * 2)
        entry = await store.get("brokers/1")
        assert entry is not None
        assert entry.value == b"me again"
    async with open_stores(own_etcd, 1, root) as (other,):
        assert await other.get("brokers/1") is None, "close() revoked the new lease"


@pytest.mark.asyncio
async def test_a_compacted_watch_lists_again(own_etcd: EtcdServer) -> None:
    async with open_stores(own_etcd, 1) as (store,):
        watch = store.watch("k/")
        try:
            assert (await next_batch(watch)).reset
            await store.put("k/1", b"1")
            latest = await store.put("k/2", b"2")
            assert latest is not None
            async with grpc.aio.insecure_channel(own_etcd.endpoints[0]) as channel:
                await rpc.KVStub(channel).Compact(rpc.CompactionRequest(revision=int(latest.version), physical=True))
            reset = await next_batch(watch)  # the watch from before k/1 cannot start: compacted
            assert reset.reset
            assert summary(reset) == [("put", "k/1", b"1"), ("put", "k/2", b"2")]
            await store.put("k/3", b"3")
            assert summary(await next_batch(watch)) == [("put", "k/3", b"3")]
        finally:
            await close_watch(watch)


@pytest.mark.asyncio
async def test_unreachable_etcd_is_a_readable_store_error() -> None:
    store = EtcdStore([f"127.0.0.1:{free_port()}"], new_root(), session_ttl_s=TTL_S, op_timeout_s=1.0)
    with pytest.raises(StoreError, match=r"cannot reach etcd at 127\.0\.0\.1:\d+"):
        await store.open()
    with pytest.raises(StoreError, match="not open"):
        await store.get("x")
