"""An in-process ``MetadataStore``: the backend for a lone broker and for unit tests.

``MemoryBackend`` holds the data and a revision counter (like etcd's: one number that grows with
every write); any number of ``MemoryStore`` sessions may share one backend, so a unit test can run
three "brokers" in one process and see them compete for keys. Versions are ``str(revision)`` of
an entry's last write. Leased keys belong to the session that wrote them: ``close()`` deletes them
at once, and ``expire()`` simulates the session being lost (keys deleted, ``_session_lost``
called), as etcd does when a lease runs out.

Neighbours: ``store`` (the interface and the model), ``etcd_store`` (the same contract over a real
etcd; ``tests/support/storecontract.py`` runs one conformance suite over both).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tidelog.broker.cluster.store import (
    ABSENT,
    Entry,
    Event,
    EventKind,
    MetadataStore,
    SessionHooks,
    StoreError,
    WatchBatch,
)


@dataclass(slots=True)
class _Item:
    value: bytes
    revision: int
    owner: int | None  # the session id whose lease holds the key, None when not leased


class _Watcher:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue: asyncio.Queue[WatchBatch | None] = asyncio.Queue()


class MemoryBackend:
    """The shared data: every session of one in-process "cluster" reads and writes here."""

    def __init__(self) -> None:
        self.revision = 0
        self._items: dict[str, _Item] = {}
        self._watchers: list[_Watcher] = []
        self._session_ids = itertools.count(1)

    def new_session_id(self) -> int:
        return next(self._session_ids)

    def get(self, key: str) -> Entry | None:
        item = self._items.get(key)
        return None if item is None else Entry(key, item.value, str(item.revision))

    def entries(self, prefix: str) -> list[Entry]:
        return [
            Entry(key, item.value, str(item.revision))
            for key, item in sorted(self._items.items())
            if key.startswith(prefix)
        ]

    def _matches(self, key: str, expect: str | None) -> bool:
        if expect is None:
            return True
        item = self._items.get(key)
        if expect == ABSENT:
            return item is None
        return item is not None and str(item.revision) == expect

    def put(self, key: str, value: bytes, expect: str | None, owner: int | None) -> Entry | None:
        if not self._matches(key, expect):
            return None
        self.revision += 1
        self._items[key] = _Item(value, self.revision, owner)
        entry = Entry(key, value, str(self.revision))
        self._publish([Event(EventKind.PUT, key, entry)])
        return entry

    def delete(self, key: str, expect: str | None) -> bool:
        if key not in self._items or not self._matches(key, expect):
            return False
        self.revision += 1
        del self._items[key]
        self._publish([Event(EventKind.DELETE, key, None)])
        return True

    def drop_session(self, owner: int) -> None:
        """Delete every key held by session ``owner``, in one revision (as etcd revokes a lease)."""
        keys = sorted(key for key, item in self._items.items() if item.owner == owner)
        if not keys:
            return
        self.revision += 1
        for key in keys:
            del self._items[key]
        self._publish([Event(EventKind.DELETE, key, None) for key in keys])

    def _publish(self, events: list[Event]) -> None:
        for watcher in self._watchers:
            mine = [event for event in events if event.key.startswith(watcher.prefix)]
            if mine:
                watcher.queue.put_nowait(WatchBatch(mine, reset=False, revision=str(self.revision)))

    def subscribe(self, prefix: str) -> tuple[_Watcher, WatchBatch]:
        """Register a watcher and return it with its reset batch (atomically: no write in between)."""
        watcher = _Watcher(prefix)
        self._watchers.append(watcher)
        listing = [Event(EventKind.PUT, entry.key, entry) for entry in self.entries(prefix)]
        return watcher, WatchBatch(listing, reset=True, revision=str(self.revision))

    def unsubscribe(self, watcher: _Watcher) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)


class MemoryStore(MetadataStore):
    """One session on a ``MemoryBackend`` (a fresh private backend when none is given)."""

    def __init__(self, backend: MemoryBackend | None = None, *, session_ttl_s: float = 10.0) -> None:
        self.backend = backend if backend is not None else MemoryBackend()
        self.session_ttl_s = session_ttl_s
        self.hooks = SessionHooks()
        self._session: int | None = None
        self._watchers: list[_Watcher] = []

    async def open(self) -> None:
        if self._session is None:
            self._session = self.backend.new_session_id()

    async def close(self) -> None:
        if self._session is None:
            return
        self.backend.drop_session(self._session)
        self._session = None
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)  # ends the watch iterators of this session

    def expire(self) -> None:
        """Simulate losing the session: leased keys go, the hooks hear it, a new session starts."""
        session = self._require_open()
        self.backend.drop_session(session)
        self._session = self.backend.new_session_id()
        self._session_lost()

    def _require_open(self) -> int:
        if self._session is None:
            raise StoreError("the memory store is not open")
        return self._session

    async def get(self, key: str) -> Entry | None:
        self._require_open()
        return self.backend.get(key)

    async def list(self, prefix: str) -> list[Entry]:
        self._require_open()
        return self.backend.entries(prefix)

    async def put(self, key: str, value: bytes, *, expect: str | None = None, leased: bool = False) -> Entry | None:
        session = self._require_open()
        return self.backend.put(key, bytes(value), expect, session if leased else None)

    async def delete(self, key: str, *, expect: str | None = None) -> bool:
        self._require_open()
        return self.backend.delete(key, expect)

    def watch(self, prefix: str) -> AsyncIterator[WatchBatch]:
        self._require_open()
        return self._watch(prefix)

    async def _watch(self, prefix: str) -> AsyncIterator[WatchBatch]:
        watcher, reset = self.backend.subscribe(prefix)
        self._watchers.append(watcher)
        try:
            yield reset
            while (batch := await watcher.queue.get()) is not None:
                yield batch
        finally:
            self.backend.unsubscribe(watcher)
            self._watchers.remove(watcher)
