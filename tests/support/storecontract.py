"""The conformance suite every ``MetadataStore`` backend passes: one set of tests, several stores.

A test module subclasses ``StoreContract`` (its name starting with ``Test``) and provides a fixture
``make_stores``: a factory ``make_stores(n)`` giving an async context manager over ``n`` open
sessions on one (fresh, empty) store; and overrides ``end_session`` (lose a session abruptly,
without ``close()``) and ``expiry_wait_s`` (how long the store may take to drop its keys then).
Users: ``tests/unit/test_memory_store.py`` (``memory_store``), ``tests/integration/test_etcd_store.py``
(``etcd_store`` against a real etcd from ``etcdserver``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from tidelog.broker.cluster.store import ABSENT, Entry, EventKind, MetadataStore, WatchBatch

StoresFactory = Callable[[int], AbstractAsyncContextManager[list[MetadataStore]]]
WAIT_S = 10.0


async def next_batch(watch: AsyncIterator[WatchBatch], timeout_s: float = WAIT_S) -> WatchBatch:
    return await asyncio.wait_for(anext(watch), timeout_s)


async def close_watch(watch: AsyncIterator[WatchBatch]) -> None:
    aclose: Callable[[], Awaitable[Any]] | None = getattr(watch, "aclose", None)
    if aclose is not None:
        await aclose()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> float:
    """Wait until ``check()`` holds; returns the seconds it took."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def summary(batch: WatchBatch) -> list[tuple[str, str, bytes | None]]:
    return [(e.kind.value, e.key, e.entry.value if e.entry else None) for e in batch.events]


async def collect_until(watch: AsyncIterator[WatchBatch], count: int) -> list[tuple[str, str, bytes | None]]:
    """Incremental events until ``count`` have arrived (a reset batch here fails the test)."""
    seen: list[tuple[str, str, bytes | None]] = []
    while len(seen) < count:
        batch = await next_batch(watch)
        assert not batch.reset, f"unexpected reset batch {summary(batch)} after {seen}"
        seen += summary(batch)
    return seen


class StoreContract:
    """The behaviour ``tidelog.broker.cluster.store`` promises, checked against one backend."""

    expiry_wait_s: float = 1.0

    async def end_session(self, store: MetadataStore) -> None:
        """End ``store``'s session the way a crash or a lost network does (no ``close()``)."""
        raise NotImplementedError

    @pytest.mark.asyncio
    async def test_get_list_put_delete(self, make_stores: StoresFactory) -> None:
        async with make_stores(1) as (store,):
            assert await store.get("brokers/1") is None
            assert await store.list("brokers/") == []
            one = await store.put("brokers/1", b"one")
            assert one is not None
            assert one.key == "brokers/1"
            assert one.value == b"one"
            assert await store.get("brokers/1") == one
            await store.put("brokers/2", b"two")
            await store.put("brokersx", b"not under the prefix")
            await store.put("topics/a", b"a")
            assert [(e.key, e.value) for e in await store.list("brokers/")] == [
                ("brokers/1", b"one"),
                ("brokers/2", b"two"),
            ]
            again = await store.put("brokers/1", b"uno")
            assert again is not None
            assert again.version != one.version
            assert await store.get("brokers/1") == again
            assert await store.delete("brokers/1") is True
            assert await store.delete("brokers/1") is False
            assert await store.get("brokers/1") is None
            assert [e.key for e in await store.list("")] == ["brokers/2", "brokersx", "topics/a"]

    @pytest.mark.asyncio
    async def test_compare_and_set(self, make_stores: StoresFactory) -> None:
        async with make_stores(1) as (store,):
            created = await store.put("controller", b"1", expect=ABSENT)
            assert created is not None
            assert await store.put("controller", b"2", expect=ABSENT) is None, "ABSENT on an existing key"
            updated = await store.put("controller", b"2", expect=created.version)
            assert updated is not None
            assert await store.put("controller", b"3", expect=created.version) is None, "stale version"
            assert await store.put("controller", b"3", expect="no-such-version") is None
            assert await store.get("controller") == updated
            assert await store.delete("controller", expect=created.version) is False
            assert await store.delete("controller", expect=updated.version) is True
            assert await store.put("controller", b"4", expect=updated.version) is None, "a deleted key"
            assert await store.put("controller", b"4", expect=ABSENT) is not None, "ABSENT after delete"

    @pytest.mark.asyncio
    async def test_concurrent_compare_and_set_has_one_winner(self, make_stores: StoresFactory) -> None:
        async with make_stores(2) as (first, second):
            results = await asyncio.gather(
                first.put("controller", b"first", expect=ABSENT), second.put("controller", b"second", expect=ABSENT)
            )
            winners = [r for r in results if r is not None]
            assert len(winners) == 1
            assert await first.get("controller") == winners[0]
            for _ in range(5):
                current = await first.get("controller")
                assert current is not None
                results = await asyncio.gather(
                    first.put("controller", b"a", expect=current.version),
                    second.put("controller", b"b", expect=current.version),
                )
                winners = [r for r in results if r is not None]
                assert len(winners) == 1
                assert await second.get("controller") == winners[0]

    @pytest.mark.asyncio
    async def test_leased_keys_vanish_on_close(self, make_stores: StoresFactory) -> None:
        async with make_stores(2) as (owner, other):
            await owner.put("brokers/1", b"leased", leased=True)
            await owner.put("topics/a", b"kept")
            watch = other.watch("brokers/")
            try:
                assert summary(await next_batch(watch)) == [("put", "brokers/1", b"leased")]
                await owner.close()
                assert await other.get("brokers/1") is None
                assert await other.get("topics/a") is not None
                assert await collect_until(watch, 1) == [("delete", "brokers/1", None)]
            finally:
                await close_watch(watch)

    @pytest.mark.asyncio
    async def test_leased_keys_vanish_when_the_session_ends(self, make_stores: StoresFactory) -> None:
        async with make_stores(2) as (owner, other):
            await owner.put("brokers/1", b"leased", leased=True)
            await owner.put("brokers/2", b"plain")
            await self.end_session(owner)

            async def gone() -> bool:
                return await other.get("brokers/1") is None

            await eventually(gone, self.expiry_wait_s, "the leased key vanishes after the session ended")
            assert [e.key for e in await other.list("brokers/")] == ["brokers/2"]

    @pytest.mark.asyncio
    async def test_watch_sees_changes_in_order(self, make_stores: StoresFactory) -> None:
        async with make_stores(2) as (writer, watcher):
            await writer.put("topics/old", b"0")
            watch = watcher.watch("topics/")
            try:
                reset = await next_batch(watch)
                assert reset.reset
                assert summary(reset) == [("put", "topics/old", b"0")]
                await writer.put("topics/a", b"1")
                await writer.put("elsewhere", b"x")
                await writer.put("topics/a", b"2")
                await writer.delete("topics/old")
                await writer.put("topics/b", b"3")
                await writer.delete("topics/a")
                assert await collect_until(watch, 5) == [
                    ("put", "topics/a", b"1"),
                    ("put", "topics/a", b"2"),
                    ("delete", "topics/old", None),
                    ("put", "topics/b", b"3"),
                    ("delete", "topics/a", None),
                ]
            finally:
                await close_watch(watch)

    @pytest.mark.asyncio
    async def test_watch_entries_carry_versions(self, make_stores: StoresFactory) -> None:
        async with make_stores(1) as (store,):
            watch = store.watch("k/")
            try:
                assert (await next_batch(watch)).events == []
                written = await store.put("k/1", b"v")
                batch = await next_batch(watch)
                assert [e.entry for e in batch.events] == [written]
                assert batch.events[0].kind is EventKind.PUT
            finally:
                await close_watch(watch)

    @pytest.mark.asyncio
    async def test_watch_started_after_writes_sees_the_listing(self, make_stores: StoresFactory) -> None:
        async with make_stores(2) as (writer, watcher):
            written: list[Entry | None] = [await writer.put(f"p/{i}", str(i).encode()) for i in range(3)]
            await writer.delete("p/1")
            watch = watcher.watch("p/")
            try:
                reset = await next_batch(watch)
                assert reset.reset
                assert [e.entry for e in reset.events] == [written[0], written[2]]
                assert all(e.kind is EventKind.PUT for e in reset.events)
                await writer.put("p/3", b"3")
                assert await collect_until(watch, 1) == [("put", "p/3", b"3")]
            finally:
                await close_watch(watch)

    @pytest.mark.asyncio
    async def test_many_watchers_and_sessions(self, make_stores: StoresFactory) -> None:
        async with make_stores(3) as stores:
            watches = [store.watch("brokers/") for store in stores]
            try:
                for watch in watches:
                    assert (await next_batch(watch)).reset
                for i, store in enumerate(stores):
                    assert await store.put(f"brokers/{i}", b"up", expect=ABSENT, leased=True) is not None
                expected = [("put", f"brokers/{i}", b"up") for i in range(3)]
                for watch in watches:
                    assert await collect_until(watch, 3) == expected
            finally:
                for watch in watches:
                    with contextlib.suppress(Exception):
                        await close_watch(watch)
