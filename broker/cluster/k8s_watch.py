"""How ``k8s_store``'s Kubernetes objects map to store entries, and its merged watch stream.

Job: name objects for keys, read entries out of ConfigMaps and Leases, judge Lease expiry, and turn
a list + two watches (ConfigMaps and Leases of one cluster, with bookmarks) into the store's
``WatchBatch`` stream: a ``reset`` batch first and after every re-list (410 Gone, a disconnect),
then PUTs and DELETEs in the order received (each kind in store order; events that arrive together
are sorted by resourceVersion, which both kinds take from the same etcd), plus DELETEs synthesised
when a Lease seen live runs past renewTime + leaseDurationSeconds without a renewal. Renewals that
change nothing but renewTime are not events. Neighbours: ``k8s_store`` (the store, its only user), ``k8s_rest``
(HTTP), ``store`` (the event types).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from tidelog.broker.cluster.k8s_rest import ApiError, KubeClient, sleep_backoff
from tidelog.broker.cluster.store import Entry, Event, EventKind, StoreError, WatchBatch

log = logging.getLogger(__name__)
Json = dict[str, Any]

LABEL_MANAGED = "app.kubernetes.io/managed-by"
LABEL_CLUSTER = "tidelog.dev/cluster"
ANN_KEY = "tidelog.dev/key"
ANN_VALUE = "tidelog.dev/value"
ANN_VERSION = "tidelog.dev/version"
CONFIGMAP, LEASE = "configmap", "lease"
_NAME_MAX = 253
_CANONICAL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(/[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def object_name(cluster: str, key: str) -> str:
    """The DNS-1123 subdomain name of ``key``'s object: ``/`` becomes ``.``, other characters
    outside ``[a-z0-9-]`` become ``-``; a short hash of the key is added whenever that mapping loses
    information (uppercase, ``_``, ``.``, empty segments) or the name would be too long."""
    prefix = f"tidelog-{cluster}-"
    slug = re.sub(r"[^a-z0-9.]+", "-", key.lower().replace("/", ".")).strip("-.")
    slug = re.sub(r"\.[-.]*", ".", re.sub(r"-*\.-*", ".", slug)) or "x"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    room = _NAME_MAX - len(prefix) - len(digest) - 1
    if _CANONICAL_RE.match(key) and len(prefix) + len(slug) <= _NAME_MAX:
        return prefix + slug
    return f"{prefix}{slug[:room].rstrip('-.')}-{digest}"


def now_micro() -> str:
    """Now as a Kubernetes MicroTime."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_expiry(obj: Json) -> float:
    """When a Lease stops counting (seconds since the epoch): renewTime + leaseDurationSeconds."""
    spec = obj.get("spec") or {}
    stamp = spec.get("renewTime") or spec.get("acquireTime")
    if not stamp:
        return 0.0
    return datetime.fromisoformat(stamp).timestamp() + float(spec.get("leaseDurationSeconds") or 0)


def obj_key(obj: Json) -> str:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(ANN_KEY, ""))


def obj_rv(obj: Json) -> str:
    return str(obj["metadata"]["resourceVersion"])


def configmap_entry(obj: Json) -> Entry:
    data = (obj.get("binaryData") or {}).get("value", "")
    return Entry(obj_key(obj), base64.b64decode(data), obj_rv(obj))


def lease_entry(obj: Json) -> Entry:
    ann = obj["metadata"].get("annotations") or {}
    return Entry(obj_key(obj), base64.b64decode(ann.get(ANN_VALUE, "")), str(ann.get(ANN_VERSION, "")))


_Item = tuple[str, Json] | BaseException  # (kind, watch event) or the error that ended a watch


class _View:
    """What one watcher has been told: key -> (kind, version), and when each live Lease expires."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.known: dict[str, tuple[str, str]] = {}
        self.expiry: dict[str, float] = {}

    def put(self, kind: str, obj: Json) -> Event | None:
        key = obj_key(obj)
        if not key.startswith(self.prefix):
            return None
        if kind == CONFIGMAP:
            entry = configmap_entry(obj)
        else:
            expires = lease_expiry(obj)
            if expires <= time.time():
                return self.delete(kind, obj)
            self.expiry[key] = expires
            entry = lease_entry(obj)
        if self.known.get(key) == (kind, entry.version):
            return None  # a Lease renewal: nothing changed for the watcher
        self.known[key] = (kind, entry.version)
        return Event(EventKind.PUT, key, entry)

    def delete(self, kind: str, obj: Json) -> Event | None:
        key = obj_key(obj)
        if (self.known.get(key) or ("",))[0] != kind:
            return None
        del self.known[key]
        self.expiry.pop(key, None)
        return Event(EventKind.DELETE, key, None)

    def expire(self, now: float) -> list[Event]:
        gone = sorted(key for key, at in self.expiry.items() if at <= now)
        for key in gone:
            del self.expiry[key]
            del self.known[key]
        return [Event(EventKind.DELETE, key, None) for key in gone]


def _rv(item: _Item) -> str:
    if isinstance(item, BaseException):
        return ""
    return str(((item[1].get("object") or {}).get("metadata") or {}).get("resourceVersion", ""))


async def _pump(
    client: KubeClient, kind: str, path: str, selector: str, revs: dict[str, str], queue: asyncio.Queue[_Item]
) -> None:
    """Feed one collection's watch events into ``queue``, resuming from the last resourceVersion
    when the server ends the stream; the error that stops it goes into the queue last."""
    try:
        while True:
            async for event in client.watch(path, selector, revs[kind], timeout_s=random.randint(240, 300)):  # noqa: S311
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    raise ApiError(int(obj.get("code", 0)), str(obj.get("reason", "")), str(obj.get("message", "")))
                revs[kind] = str((obj.get("metadata") or {}).get("resourceVersion", revs[kind]))
                if event.get("type") != "BOOKMARK":
                    queue.put_nowait((kind, event))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        queue.put_nowait(exc)


async def _watch_once(
    client: KubeClient, paths: dict[str, str], selector: str, prefix: str
) -> AsyncIterator[WatchBatch]:
    (cms, cm_rv), (leases, lease_rv) = await asyncio.gather(
        client.list_all(paths[CONFIGMAP], selector), client.list_all(paths[LEASE], selector)
    )
    view = _View(prefix)
    revs = {CONFIGMAP: cm_rv, LEASE: lease_rv}
    events = [e for e in (view.put(CONFIGMAP, o) for o in cms) if e]
    events += [e for e in (view.put(LEASE, o) for o in leases) if e]
    events.sort(key=lambda e: e.key)
    queue: asyncio.Queue[_Item] = asyncio.Queue()
    # Watching starts now, not when the consumer next asks: what happens meanwhile is queued.
    pumps = [asyncio.create_task(_pump(client, kind, paths[kind], selector, revs, queue)) for kind in paths]
    try:
        yield WatchBatch(events, reset=True, revision=f"{cm_rv}/{lease_rv}")
        while True:
            timeout = max(0.0, min(view.expiry.values()) - time.time()) if view.expiry else None
            items: list[_Item] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):  # not wait_for: it may swallow a cancellation (3.11)
                    items.append(await queue.get())
            while not queue.empty():
                items.append(queue.get_nowait())
            if all(not isinstance(i, BaseException) and _rv(i).isdigit() for i in items):
                items.sort(key=lambda i: int(_rv(i)))  # both kinds' versions are the same etcd's revisions
            batch: list[Event] = []
            for item in items:
                if isinstance(item, BaseException):
                    raise item
                kind, event = item
                obj = event.get("object") or {}
                change = view.delete(kind, obj) if event.get("type") == "DELETED" else view.put(kind, obj)
                if change is not None:
                    batch.append(change)
            batch += view.expire(time.time())
            if batch:
                yield WatchBatch(batch, revision=f"{revs[CONFIGMAP]}/{revs[LEASE]}")
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def watch_store(
    client: KubeClient, paths: dict[str, str], selector: str, prefix: str
) -> AsyncIterator[WatchBatch]:
    """The store's watch: ``_watch_once`` again (so a new ``reset`` batch) whenever it fails."""
    attempt = 0
    while True:
        try:
            async for batch in _watch_once(client, paths, selector, prefix):
                attempt = 0
                yield batch
        except StoreError as exc:
            gone = isinstance(exc, ApiError) and exc.status == 410
            log.log(logging.DEBUG if gone else logging.WARNING, "metadata watch %r re-lists: %s", prefix, exc)
            if gone:
                continue
        await sleep_backoff(attempt)
        attempt += 1
