"""Typed cluster metadata over a ``MetadataStore``: a local cache kept current by one watch, and
the writes every broker makes (register itself, create and delete topics, change a partition
under compare-and-set).

Readers (handlers, replication, the controller) read the cache synchronously and subscribe to
changes; writers go to the store and see their own write in the cache at once. A compare-and-set
that loses (someone else changed the topic first) re-reads and re-applies the caller's change, so
concurrent writers (the controller, partition leaders changing their ISR) never overwrite each
other. Neighbours: ``store`` (the backends), ``state`` (the values), ``controller`` (decisions).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from tidelog.broker.cluster.state import (
    BROKERS,
    CLUSTER,
    CONTROLLER,
    CONTROLLER_EPOCH,
    PRODUCER_IDS,
    TOPICS,
    BrokerInfo,
    ControllerInfo,
    TopicState,
    broker_key,
    topic_key,
)
from tidelog.broker.cluster.store import ABSENT, Entry, EventKind, MetadataStore, StoreError, WatchBatch

log = logging.getLogger(__name__)
CAS_ATTEMPTS = 50


@dataclass(frozen=True, slots=True)
class Change:
    """What one watch batch changed: topic names (created, altered or deleted), and whether the
    broker set or the controller changed."""

    topics: frozenset[str]
    brokers: bool
    controller: bool


Listener = Callable[[Change], None]


def _newer(a: str, b: str) -> bool:
    """Whether version ``a`` is newer than ``b`` (both etcd and Kubernetes use growing integers)."""
    if a.isdigit() and b.isdigit():
        return int(a) > int(b)
    return a != b


class ClusterMetadata:
    """The cache and the writes. ``start`` waits for the first full listing."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.cluster_id = ""
        self.brokers: dict[int, BrokerInfo] = {}
        self.controller: ControllerInfo | None = None
        self.topics: dict[str, TopicState] = {}
        self.versions: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._registration: BrokerInfo | None = None  # ours, put again when the session is lost
        self._reregistering: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        # other keys mirrored for other owners (ACLs): prefix -> (key -> value, called after a change)
        self._mirrors: dict[str, tuple[dict[str, bytes], Callable[[dict[str, bytes]], None]]] = {}

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def mirror(self, prefix: str, changed: Callable[[dict[str, bytes]], None]) -> dict[str, bytes]:
        """Keep every key under ``prefix`` (not topics, brokers or the controller) in a dictionary
        from this watch, and call ``changed`` with it after each batch that touched one. Register
        before ``start``: the first listing fills it."""
        values: dict[str, bytes] = {}
        self._mirrors[prefix] = (values, changed)
        return values

    async def start(self) -> None:
        await self._ensure_cluster_id()
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="metadata-watch")
        self.store.on_session_lost(self._session_lost)
        await self._synced.wait()

    async def close(self) -> None:
        self._registration = None
        if self._reregistering is not None:
            self._reregistering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reregistering
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _ensure_cluster_id(self) -> None:
        fresh = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        await self.store.put(CLUSTER, fresh.encode(), expect=ABSENT)
        entry = await self.store.get(CLUSTER)
        if entry is None:
            raise StoreError("the cluster id vanished right after it was written")
        self.cluster_id = entry.value.decode()

    async def _watch(self) -> None:
        async for batch in self.store.watch(""):
            try:
                self._apply(batch)
            except Exception:
                log.exception("could not apply a metadata change; continuing with the next")

    def _apply(self, batch: WatchBatch) -> None:
        topics: set[str] = set()
        brokers = controller = False
        if batch.reset:
            topics.update(self.topics)
            brokers = controller = True
            self.brokers.clear()
            self.topics.clear()
            self.controller = None
            self.versions.clear()
            mirrored = set(self._mirrors)
            for values, _changed in self._mirrors.values():
                values.clear()
        else:
            mirrored = set()
        for event in batch.events:
            key = event.key
            if event.kind is EventKind.PUT and event.entry is not None:
                known = self.versions.get(key)
                if known is not None and not _newer(event.entry.version, known):
                    continue
                self._put(event.entry)
            else:
                self.versions.pop(key, None)
                self._remove(key)
            if key.startswith(TOPICS):
                topics.add(key[len(TOPICS) :])
            elif key.startswith(BROKERS):
                brokers = True
            elif key == CONTROLLER:
                controller = True
            else:
                mirrored.update(p for p in self._mirrors if key.startswith(p))
        self._synced.set()
        if topics or brokers or controller:
            self._notify(Change(frozenset(topics), brokers, controller))
        for prefix in mirrored:
            values, changed = self._mirrors[prefix]
            try:
                changed(values)
            except Exception:
                log.exception("metadata mirror of %s failed", prefix)

    def _put(self, entry: Entry) -> None:
        self.versions[entry.key] = entry.version
        key = entry.key
        if key.startswith(TOPICS):
            state = TopicState.decode(entry.value)
            self.topics[state.name] = state
        elif key.startswith(BROKERS):
            info = BrokerInfo.decode(entry.value)
            self.brokers[info.broker_id] = info
        elif key == CONTROLLER:
            self.controller = ControllerInfo.decode(entry.value)
        else:
            for prefix, (values, _changed) in self._mirrors.items():
                if key.startswith(prefix):
                    values[key] = entry.value

    def _remove(self, key: str) -> None:
        if key.startswith(TOPICS):
            self.topics.pop(key[len(TOPICS) :], None)
        elif key.startswith(BROKERS):
            with contextlib.suppress(ValueError):
                self.brokers.pop(int(key[len(BROKERS) :]), None)
        elif key == CONTROLLER:
            self.controller = None
        else:
            for prefix, (values, _changed) in self._mirrors.items():
                if key.startswith(prefix):
                    values.pop(key, None)

    def _notify(self, change: Change) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("metadata listener failed")

    def _written(self, entry: Entry) -> None:
        """Our own write, into the cache at once (the watch will confirm it)."""
        known = self.versions.get(entry.key)
        if known is not None and not _newer(entry.version, known):
            return
        self._put(entry)
        if entry.key.startswith(TOPICS):
            self._notify(Change(frozenset({entry.key[len(TOPICS) :]}), False, False))
        self._mirrored(entry.key)

    def written(self, entry: Entry) -> None:
        """A write of a mirrored key by this broker: seen at once (the watch confirms it later)."""
        self._written(entry)

    def deleted(self, key: str) -> None:
        """A delete of a mirrored key by this broker: seen at once."""
        self.versions.pop(key, None)
        self._remove(key)
        self._mirrored(key)

    def _mirrored(self, key: str) -> None:
        for prefix, (values, changed) in self._mirrors.items():
            if key.startswith(prefix):
                changed(values)

    # --- writes -------------------------------------------------------------------------------

    def _session_lost(self) -> None:
        """The store's session ended and our leased registration with it: register again under the
        next session as soon as the store answers (else the controller treats this live broker
        as gone for good: out of every ISR, never elected)."""
        if self._registration is None or (self._reregistering is not None and not self._reregistering.done()):
            return
        self._reregistering = asyncio.get_running_loop().create_task(self._reregister(), name="metadata-reregister")

    async def _reregister(self) -> None:
        while (info := self._registration) is not None:
            try:
                await self.register(info)
            except StoreError as exc:
                log.info("broker %d: cannot register again yet: %s", info.broker_id, exc)
                await asyncio.sleep(0.5)
                continue
            log.warning("broker %d: session was lost; registered again", info.broker_id)
            return

    async def register(self, info: BrokerInfo) -> None:
        self._registration = info
        entry = await self.store.put(broker_key(info.broker_id), info.encode(), leased=True)
        if entry is not None:
            self.brokers[info.broker_id] = info
            self.versions[entry.key] = entry.version

    async def deregister(self, broker_id: int) -> None:
        self._registration = None
        await self.store.delete(broker_key(broker_id))

    async def campaign(self, broker_id: int) -> int | None:
        """Try to become the controller; the new controller epoch if this broker now holds the
        (leased) key. Epochs come from a counter in the store, so they only ever grow."""
        if await self.store.get(CONTROLLER) is not None:
            return None
        epoch = await self._next_controller_epoch()
        entry = await self.store.put(CONTROLLER, ControllerInfo(broker_id, epoch).encode(), expect=ABSENT, leased=True)
        if entry is not None:
            self.controller = ControllerInfo(broker_id, epoch)
            return epoch
        return None

    async def _next_controller_epoch(self) -> int:
        for _attempt in range(CAS_ATTEMPTS):
            entry = await self.store.get(CONTROLLER_EPOCH)
            epoch = int(entry.value) + 1 if entry is not None else 1
            if await self.store.put(
                CONTROLLER_EPOCH, str(epoch).encode(), expect=entry.version if entry is not None else ABSENT
            ):
                return epoch
        raise StoreError(f"gave up bumping the controller epoch after {CAS_ATTEMPTS} conflicting attempts")

    async def resign(self, broker_id: int) -> None:
        current = await self.store.get(CONTROLLER)
        if current is not None and ControllerInfo.decode(current.value).broker_id == broker_id:
            await self.store.delete(CONTROLLER, expect=current.version)

    async def create_topic(self, state: TopicState) -> bool:
        entry = await self.store.put(topic_key(state.name), state.encode(), expect=ABSENT)
        if entry is None:
            return False
        self._written(entry)
        return True

    async def delete_topic(self, name: str) -> bool:
        return await self.store.delete(topic_key(name))

    async def update_topic(self, name: str, change: Callable[[TopicState], TopicState | None]) -> TopicState | None:
        """Apply ``change`` under compare-and-set, re-reading and retrying when another writer got
        there first. ``change`` returns None to leave the topic as it is (the loop then stops).
        Returns the topic as written, or None if it does not exist or nothing changed."""
        key = topic_key(name)
        current = self.topics.get(name)
        version = self.versions.get(key)
        for _attempt in range(CAS_ATTEMPTS):
            if current is None or version is None:
                entry = await self.store.get(key)
                if entry is None:
                    return None
                current, version = TopicState.decode(entry.value), entry.version
            updated = change(current)
            if updated is None or updated == current:
                return None
            written = await self.store.put(key, updated.encode(), expect=version)
            if written is not None:
                self._written(written)
                return updated
            current = version = None
        raise StoreError(f"topic {name!r}: gave up after {CAS_ATTEMPTS} conflicting updates")

    async def allocate_producer_ids(self, count: int) -> int:
        """The first of ``count`` producer ids no other broker will ever hand out (a block taken
        from the store's counter under compare-and-set, as Kafka's controller hands out blocks)."""
        for _attempt in range(CAS_ATTEMPTS):
            entry = await self.store.get(PRODUCER_IDS)
            start = int(entry.value) if entry is not None else 0
            written = await self.store.put(
                PRODUCER_IDS, str(start + count).encode(), expect=entry.version if entry is not None else ABSENT
            )
            if written is not None:
                return start
        raise StoreError(f"gave up allocating producer ids after {CAS_ATTEMPTS} conflicting attempts")

    def live_brokers(self) -> dict[int, str | None]:
        """Registered brokers that are not shutting down, with their racks."""
        return {b.broker_id: b.rack for b in self.brokers.values() if not b.shutting_down}
