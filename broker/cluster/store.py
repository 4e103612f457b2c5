"""The metadata store interface: a small, versioned key-value view of an existing consensus store.

Every backend (``etcd_store`` over etcd's v3 gRPC API, ``k8s_store`` over the Kubernetes API,
``memory_store`` for a lone broker and for unit tests) offers the same operations, so the
layers above (``metadata``: typed cluster state; the controller; replication) never see which one
is underneath. Nothing here is a consensus algorithm: compare-and-set, leases and watches are the
store's own.

Model:
- keys are ``/``-separated paths relative to the cluster's root (``brokers/1``, ``controller``,
  ``topics/orders``); values are opaque bytes (JSON above this layer);
- every entry carries a ``version``, an opaque token (etcd's mod revision, Kubernetes'
  resourceVersion) that changes on every write; ``put(..., expect=version)`` is compare-and-set,
  ``expect=ABSENT`` creates only if the key does not exist;
- ``leased=True`` ties a key to this store's session (etcd lease, Kubernetes Lease renewals): when
  the session ends (the process dies, the network goes, ``close()``), the key disappears for every
  other watcher within ``session_ttl_s``;
- ``watch(prefix)`` yields batches of events; the first batch (``reset=True``) is the full current
  listing, and so is any batch after the backend lost track (reconnect, compaction): a ``reset``
  batch replaces what the watcher knew.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import Enum

ABSENT = ""  # as ``expect``: the key must not exist yet


class StoreError(Exception):
    """The store cannot be reached or answered with an error (retriable: the caller may try again)."""


class SessionLostError(StoreError):
    """The session (lease) this broker held has ended: its leased keys are gone."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: bytes
    version: str


class EventKind(Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    key: str
    entry: Entry | None  # None for deletes


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Changes in store order. ``reset``: ``events`` is the whole listing (all PUTs) that replaces
    everything the watcher knew under the prefix."""

    events: list[Event]
    reset: bool = False
    revision: str = ""


@dataclass(slots=True)
class SessionHooks:
    """What the owner wants to hear about the session (called on the event loop)."""

    lost: list[Callable[[], None]] = field(default_factory=list)


class MetadataStore(abc.ABC):
    """One cluster's metadata in a consensus store. Open with ``open``, stop with ``close``."""

    session_ttl_s: float = 10.0
    hooks: SessionHooks

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and start a session (lease). Raises StoreError if the store cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End the session (leased keys go at once) and disconnect."""

    @abc.abstractmethod
    async def get(self, key: str) -> Entry | None: ...

    @abc.abstractmethod
    async def list(self, prefix: str) -> list[Entry]:
        """Every entry whose key starts with ``prefix``, sorted by key."""

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, *, expect: str | None = None, leased: bool = False) -> Entry | None:
        """Write ``value``; with ``expect`` only if the key's version is still that (``ABSENT``: the
        key must not exist). Returns the new entry, or None when the condition failed."""

    @abc.abstractmethod
    async def delete(self, key: str, *, expect: str | None = None) -> bool:
        """Delete ``key`` (with ``expect``: only at that version). False if the condition failed or
        the key did not exist."""

    @abc.abstractmethod
    def watch(self, prefix: str) -> AsyncIterator[WatchBatch]:
        """Changes under ``prefix``, starting with a ``reset`` batch of the current listing. Runs
        until cancelled; reconnects by itself (then yields another ``reset`` batch)."""

    def on_session_lost(self, callback: Callable[[], None]) -> None:
        self.hooks.lost.append(callback)

    def _session_lost(self) -> None:
        for callback in list(self.hooks.lost):
            callback()
