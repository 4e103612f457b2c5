"""The ``kubernetes`` metadata store: ``MetadataStore`` over ConfigMaps and coordination Leases.

Job: map the store's keys onto objects in one namespace, labelled for one cluster, and give them the
store's semantics. Neighbours: ``store`` (the interface and its model), ``k8s_rest`` (HTTP, config,
errors), ``k8s_watch`` (the merged watch stream), ``memory_store``/``etcd_store`` (the other
backends); the RBAC it needs is ``e2e/manifests/metadata-rbac.yaml``.

Mapping:
- every key is one object named ``tidelog-<cluster>-<slug>[-<hash>]`` (``object_name``), the
  original key in the ``tidelog.dev/key`` annotation, labels ``app.kubernetes.io/managed-by=tidelog``
  and ``tidelog.dev/cluster=<cluster>`` (listing and watching go by that label selector);
- a plain key is a ConfigMap, its value in ``binaryData.value``; its version is the object's
  resourceVersion; CAS = replace with that resourceVersion (409 -> None), ``ABSENT`` = create
  (409 -> None), delete with a resourceVersion precondition; each write also sets a random
  ``tidelog.dev/version`` annotation, because the API server skips an unchanged write and keeps
  its resourceVersion (two CAS writes of one value would both succeed);
- a leased key is a Lease (holderIdentity = this session's identity, leaseDurationSeconds = the
  TTL, renewTime renewed every TTL/3 for all of this session's Leases), its value base64 in the
  ``tidelog.dev/value`` annotation. Renewals change the resourceVersion, so a leased key's version
  is a token (``L<hex>``, annotation ``tidelog.dev/version``) that changes only when the key is
  written; CAS on it reads, compares and replaces with the read resourceVersion (retrying when
  only a renewal came between). Annotations hold at most 256 KiB in all, so a leased value must
  stay under ~180 KiB (a plain one under ~750 KiB: 1 MiB per object, in base64). A Lease whose
  renewTime + leaseDurationSeconds has passed counts as deleted: reads skip it, writes replace it,
  watchers see a DELETE when it expires. Clocks of the brokers and the API server are assumed
  synchronised (NTP) to well within the TTL.
- a key is either plain or leased for its whole life; writing one key both ways is not supported;
- ``list`` reads every object of the cluster (by label) and filters by prefix on the client.
If renewals keep failing for longer than the TTL the session is lost: ``on_session_lost`` callbacks
run and leased writes raise ``SessionLostError``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import os
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from tidelog.broker.cluster.k8s_rest import ApiError, KubeClient, KubeConfig, default_config
from tidelog.broker.cluster.k8s_watch import (
    ANN_KEY,
    ANN_VALUE,
    ANN_VERSION,
    CONFIGMAP,
    LABEL_CLUSTER,
    LABEL_MANAGED,
    LEASE,
    configmap_entry,
    lease_entry,
    lease_expiry,
    now_micro,
    obj_key,
    obj_rv,
    object_name,
    watch_store,
)
from tidelog.broker.cluster.store import (
    ABSENT,
    Entry,
    MetadataStore,
    SessionHooks,
    SessionLostError,
    StoreError,
    WatchBatch,
)

log = logging.getLogger(__name__)
Json = dict[str, Any]
_CLUSTER_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TRIES = 20


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class KubernetesStore(MetadataStore):
    """One cluster's metadata in one namespace of a Kubernetes API server."""

    def __init__(
        self,
        namespace: str,
        cluster: str,
        session_ttl_s: float = 10.0,
        identity: str | None = None,
        *,
        config: KubeConfig | None = None,
    ):
        if not _CLUSTER_RE.match(cluster) or len(cluster) > 63:
            raise ValueError(f"cluster name {cluster!r} must be a DNS-1123 label (a-z, 0-9, '-', <= 63)")
        self.namespace = namespace
        self.cluster = cluster
        self.session_ttl_s = session_ttl_s
        self.identity = identity or default_identity()
        self.hooks = SessionHooks()
        self.client = KubeClient(config or default_config())
        self.selector = f"{LABEL_MANAGED}=tidelog,{LABEL_CLUSTER}={cluster}"
        self._own: dict[str, str] = {}  # this session's Leases: name -> last resourceVersion seen
        self._renewer: asyncio.Task[None] | None = None
        self._lost = False
        self._stopping = asyncio.Event()

    # -------------------------------------------------------------------------------- plumbing

    def path(self, kind: str, name: str = "") -> str:
        base = (
            f"/api/v1/namespaces/{self.namespace}/configmaps"
            if kind == CONFIGMAP
            else f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"
        )
        return f"{base}/{name}" if name else base

    def _name(self, key: str) -> str:
        return object_name(self.cluster, key)

    def _metadata(self, name: str, key: str, annotations: dict[str, str] | None = None) -> Json:
        labels = {LABEL_MANAGED: "tidelog", LABEL_CLUSTER: self.cluster}
        return {"name": name, "labels": labels, "annotations": {ANN_KEY: key, **(annotations or {})}}

    async def _get(self, kind: str, name: str, key: str) -> Json | None:
        try:
            obj = await self.client.request("GET", self.path(kind, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        if obj_key(obj) != key:
            raise StoreError(f"object {name} holds key {obj_key(obj)!r}, not {key!r} (name collision)")
        return obj

    async def _delete(self, kind: str, name: str, rv: str | None) -> bool:
        """Delete (at ``rv`` if given); False if absent or at another version."""
        body: Json = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if rv is not None:
            body["preconditions"] = {"resourceVersion": rv}
        try:
            await self.client.request("DELETE", self.path(kind, name), body=body)
        except ApiError as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    def _live(self, obj: Json | None) -> bool:
        return obj is not None and lease_expiry(obj) > time.time()

    # ------------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        await self.client.open()
        self._stopping.clear()
        try:  # reachable, and allowed to read what it needs
            await self.client.request(
                "GET", self.path(CONFIGMAP), params={"limit": "1", "labelSelector": self.selector}
            )
            await self.client.request("GET", self.path(LEASE), params={"limit": "1", "labelSelector": self.selector})
        except StoreError:
            await self.client.close()
            raise
        self._renewer = asyncio.create_task(self._renew_loop(), name=f"k8s-store-renew-{self.identity}")

    async def _stop_renewing(self) -> None:
        # Let a renewal in flight finish: cancelling a request while it connects leaks its socket.
        self._stopping.set()
        if self._renewer is not None:
            await asyncio.wait({self._renewer}, timeout=self.client.request_timeout_s + 1)
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    async def close(self) -> None:
        await self._stop_renewing()
        for name, rv in list(self._own.items()):
            with contextlib.suppress(StoreError):
                if not await self._delete(LEASE, name, rv):  # a renewal raced us: re-read once
                    obj = await self.client.request("GET", self.path(LEASE, name))
                    if (obj.get("spec") or {}).get("holderIdentity") == self.identity:
                        await self._delete(LEASE, name, obj_rv(obj))
        self._own.clear()
        await self.client.close()

    async def abandon(self) -> None:
        """Stop renewing and disconnect, leaving this session's Leases to expire (what a crash
        does; for tests)."""
        await self._stop_renewing()
        self._own.clear()
        await self.client.close()

    # ----------------------------------------------------------------------------------- reads

    async def get(self, key: str) -> Entry | None:
        name = self._name(key)
        cm, lease = await asyncio.gather(self._get(CONFIGMAP, name, key), self._get(LEASE, name, key))
        if cm is not None:
            return configmap_entry(cm)
        return lease_entry(lease) if lease is not None and self._live(lease) else None

    async def list(self, prefix: str) -> list[Entry]:
        (cms, _), (leases, _) = await asyncio.gather(
            self.client.list_all(self.path(CONFIGMAP), self.selector),
            self.client.list_all(self.path(LEASE), self.selector),
        )
        entries = [configmap_entry(o) for o in cms if obj_key(o).startswith(prefix)]
        entries += [lease_entry(o) for o in leases if obj_key(o).startswith(prefix) and self._live(o)]
        return sorted(entries, key=lambda e: e.key)

    # ---------------------------------------------------------------------------------- writes

    async def put(self, key: str, value: bytes, *, expect: str | None = None, leased: bool = False) -> Entry | None:
        if leased:
            return await self._put_lease(key, value, expect)
        name = self._name(key)
        body: Json = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            # a fresh token per write: Kubernetes skips (and keeps the version of) unchanged writes
            "metadata": self._metadata(name, key, {ANN_VERSION: secrets.token_hex(8)}),
            "binaryData": {"value": base64.b64encode(value).decode()},
        }
        if expect is not None and expect != ABSENT:
            if not expect.isdigit():
                return None  # not a ConfigMap version (a leased key's token, or garbage)
            body["metadata"]["resourceVersion"] = expect
        for _ in range(_TRIES):
            try:
                if expect == ABSENT:
                    return configmap_entry(await self.client.request("POST", self.path(CONFIGMAP), body=body))
                try:
                    return configmap_entry(await self.client.request("PUT", self.path(CONFIGMAP, name), body=body))
                except ApiError as exc:
                    if exc.status != 404 or expect is not None:
                        raise
                return configmap_entry(await self.client.request("POST", self.path(CONFIGMAP), body=body))
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
                if expect is not None:
                    return None
        raise StoreError(f"put {key}: too much contention")

    async def _put_lease(self, key: str, value: bytes, expect: str | None) -> Entry | None:
        if self._lost:
            raise SessionLostError("the Kubernetes store's session was lost")
        name = self._name(key)
        token = "L" + secrets.token_hex(8)
        annotations = {ANN_VALUE: base64.b64encode(value).decode(), ANN_VERSION: token}
        for _ in range(_TRIES):
            cur = await self._get(LEASE, name, key)
            live = self._live(cur)
            if expect == ABSENT and live:
                return None
            if expect not in (None, ABSENT) and (not live or cur is None or lease_entry(cur).version != expect):
                return None
            now = now_micro()
            spec = {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, math.ceil(self.session_ttl_s)),
                "acquireTime": now,
                "renewTime": now,
            }
            if cur is not None and (cur.get("spec") or {}).get("holderIdentity") == self.identity and live:
                spec["acquireTime"] = cur["spec"].get("acquireTime", now)
            body: Json = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": self._metadata(name, key, annotations),
                "spec": spec,
            }
            try:
                if cur is None:
                    obj = await self.client.request("POST", self.path(LEASE), body=body)
                else:
                    body["metadata"]["resourceVersion"] = obj_rv(cur)
                    obj = await self.client.request("PUT", self.path(LEASE, name), body=body)
            except ApiError as exc:
                if exc.status in (404, 409):
                    continue  # a renewal or another writer came between: read again and decide again
                raise
            self._own[name] = obj_rv(obj)
            return lease_entry(obj)
        raise StoreError(f"put {key}: too much contention")

    async def delete(self, key: str, *, expect: str | None = None) -> bool:
        name = self._name(key)
        if expect is None or expect.isdigit():
            if await self._delete(CONFIGMAP, name, expect):
                return True
            if expect is not None or await self._get(CONFIGMAP, name, key) is not None:
                return False  # at another version (a ConfigMap version never names a Lease)
        for _ in range(_TRIES):
            cur = await self._get(LEASE, name, key)
            if cur is None:
                return False
            if not self._live(cur):
                await self._delete(LEASE, name, obj_rv(cur))  # tidy up an expired Lease
                return False
            if expect is not None and lease_entry(cur).version != expect:
                return False
            if await self._delete(LEASE, name, obj_rv(cur)):
                self._own.pop(name, None)
                return True
        raise StoreError(f"delete {key}: too much contention")

    # ---------------------------------------------------------------------------------- session

    async def _renew_loop(self) -> None:
        interval = self.session_ttl_s / 3
        last_ok = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: it may swallow a cancellation (3.11)
                    await self._stopping.wait()
                return
            started = time.monotonic()
            results = await asyncio.gather(*(self._renew(n, rv) for n, rv in list(self._own.items())))
            if all(results):
                last_ok = started
            elif time.monotonic() - last_ok > self.session_ttl_s:
                log.error(
                    "metadata session %s lost: Lease renewals failed for %.1f s", self.identity, self.session_ttl_s
                )
                self._lost = True
                self._own.clear()
                self._session_lost()
                return

    async def _renew(self, name: str, rv: str) -> bool:
        """Renew one Lease: True when renewed, deleted or taken by another writer; False if the API failed."""
        for _ in range(3):
            patch = {"metadata": {"resourceVersion": rv}, "spec": {"renewTime": now_micro()}}
            try:
                obj = await self.client.request(
                    "PATCH", self.path(LEASE, name), body=patch, content_type="application/merge-patch+json"
                )
            except ApiError as exc:
                if exc.status == 404:
                    self._own.pop(name, None)
                    return True
                if exc.status != 409:
                    return False
                try:
                    cur = await self.client.request("GET", self.path(LEASE, name))
                except StoreError:
                    return False
                if (cur.get("spec") or {}).get("holderIdentity") != self.identity:
                    self._own.pop(name, None)  # another session wrote the key: it is theirs now
                    return True
                rv = obj_rv(cur)
                continue
            except StoreError:
                return False
            if name in self._own:
                self._own[name] = obj_rv(obj)
            return True
        return False

    # ----------------------------------------------------------------------------------- watch

    async def watch(self, prefix: str) -> AsyncIterator[WatchBatch]:
        paths = {CONFIGMAP: self.path(CONFIGMAP), LEASE: self.path(LEASE)}
        async for batch in watch_store(self.client, paths, self.selector, prefix):
            yield batch
