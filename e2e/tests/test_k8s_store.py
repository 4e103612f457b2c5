"""The ``kubernetes`` metadata store (broker/cluster/k8s_store.py) against a real kube-apiserver + etcd.

Runs the shared conformance suite (tests/support/storecontract.py) and the Kubernetes-specific
behaviour: object names and shapes, Lease renewals that do not change versions, expiry seen by
watchers, takeover of expired Leases, session loss, watch reset after 410 Gone and after a cut
connection, and the RBAC of e2e/manifests/metadata-rbac.yaml being enough (the store run with a
ServiceAccount token from the TokenRequest API and nothing else bound). Needs only the cached
etcd and kube-apiserver binaries (e2e/support/apiserver.py), not a whole cluster.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from apiserver import ApiServer, free_port, run_apiserver  # type: ignore[import-not-found]
from faultproxy import FaultProxy  # type: ignore[import-not-found]
from storecontract import StoreContract, close_watch, collect_until, eventually, next_batch, summary

from tidelog.broker.cluster import k8s_rest
from tidelog.broker.cluster.k8s_rest import ApiError, KubeClient, KubeConfig, kubeconfig_file_config
from tidelog.broker.cluster.k8s_store import KubernetesStore
from tidelog.broker.cluster.k8s_watch import object_name
from tidelog.broker.cluster.store import ABSENT, MetadataStore, SessionLostError

TTL_S = 2.0
RBAC = Path(__file__).resolve().parents[1] / "manifests" / "metadata-rbac.yaml"


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    with run_apiserver() as server:
        yield server


@pytest.fixture(scope="module")
def namespace(api: ApiServer) -> str:
    ns = f"t-{uuid.uuid4().hex[:6]}"
    api.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    return ns


Opener = Callable[..., AbstractAsyncContextManager[list[KubernetesStore]]]


@pytest.fixture
def open_stores(api: ApiServer, namespace: str) -> Opener:
    """``open_stores(n, config=admin)``: n open sessions on a fresh cluster name, closed after."""

    @asynccontextmanager
    async def opener(n: int, config: Callable[[], KubeConfig] | None = None) -> AsyncIterator[list[KubernetesStore]]:
        cluster = f"c{uuid.uuid4().hex[:8]}"
        make = config or (lambda: kubeconfig_file_config(api.kubeconfig))
        stores = [KubernetesStore(namespace, cluster, TTL_S, f"session-{i}", config=make()) for i in range(n)]
        try:
            for store in stores:
                await store.open()
            yield stores
        finally:
            for store in stores:
                await store.close()

    return opener


class TestKubernetesStoreContract(StoreContract):
    expiry_wait_s = TTL_S + 3.0

    @pytest.fixture
    def make_stores(self, open_stores: Opener) -> Callable[[int], AbstractAsyncContextManager[list[MetadataStore]]]:
        return open_stores  # type: ignore[return-value]

    async def end_session(self, store: MetadataStore) -> None:
        assert isinstance(store, KubernetesStore)
        await store.abandon()


DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def test_object_names_are_dns_safe_readable_and_distinct() -> None:
    keys = ["brokers/1", "controller", "topics/orders", "topics/Orders", "topics/my_topic", "topics/my.topic",
            "topics/my-topic", "a//b", "/lead", "trail/", "-x-", "UPPER", "x" * 400, "x" * 401, "", "ü/ö"]  # fmt: skip
    names = [object_name("prod", k) for k in keys]
    assert len(set(names)) == len(keys)
    for name in names:
        assert DNS_SUBDOMAIN.match(name), name
        assert len(name) <= 253, name
    assert object_name("prod", "brokers/1") == "tidelog-prod-brokers.1"  # no hash when nothing is lost
    assert object_name("prod", "topics/my_topic").startswith("tidelog-prod-topics.my-topic-")


@pytest.mark.asyncio
async def test_objects_are_labelled_configmaps_and_leases(api: ApiServer, namespace: str, open_stores: Opener) -> None:
    async with open_stores(1) as (store,):
        keys = {"topics/Orders_v2.x": b"\x00\xffbinary", "brokers/7": b"leased"}
        await store.put("topics/Orders_v2.x", keys["topics/Orders_v2.x"])
        lease = await store.put("brokers/7", keys["brokers/7"], leased=True)
        assert lease is not None
        assert [(e.key, e.value) for e in await store.list("")] == sorted(keys.items())
        cm = api.request(
            "GET", f"/api/v1/namespaces/{namespace}/configmaps/{object_name(store.cluster, 'topics/Orders_v2.x')}"
        )
        assert cm["metadata"]["labels"] == {
            "app.kubernetes.io/managed-by": "tidelog",
            "tidelog.dev/cluster": store.cluster,
        }
        assert cm["metadata"]["annotations"]["tidelog.dev/key"] == "topics/Orders_v2.x"
        assert base64.b64decode(cm["binaryData"]["value"]) == b"\x00\xffbinary"
        obj = api.request(
            "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/tidelog-{store.cluster}-brokers.7"
        )
        assert obj["spec"]["holderIdentity"] == "session-0"
        assert obj["spec"]["leaseDurationSeconds"] == 2
        assert obj["metadata"]["labels"]["tidelog.dev/cluster"] == store.cluster


@pytest.mark.asyncio
async def test_renewals_keep_versions_and_make_no_events(open_stores: Opener) -> None:
    async with open_stores(2) as (owner, watcher):
        entry = await owner.put("controller", b"me", expect=ABSENT, leased=True)
        assert entry is not None
        watch = watcher.watch("controller")
        try:
            assert summary(await next_batch(watch)) == [("put", "controller", b"me")]
            pending = asyncio.ensure_future(anext(watch))  # not wait_for: a cancelled anext ends the watch
            done, _ = await asyncio.wait({pending}, timeout=TTL_S * 2)  # ~6 renewals meanwhile, none an event
            assert not done, summary(pending.result())
            assert await watcher.get("controller") == entry
            assert await watcher.put("controller", b"thief", expect=ABSENT, leased=True) is None
            moved = await owner.put("controller", b"me2", expect=entry.version, leased=True)
            assert moved is not None
            assert summary(await asyncio.wait_for(pending, 10)) == [("put", "controller", b"me2")]
        finally:
            await close_watch(watch)


@pytest.mark.asyncio
async def test_expired_lease_is_a_delete_for_watchers_and_free_to_take(open_stores: Opener) -> None:
    async with open_stores(2) as (owner, other):
        await owner.put("controller", b"owner", expect=ABSENT, leased=True)
        watch = other.watch("")
        try:
            assert summary(await next_batch(watch)) == [("put", "controller", b"owner")]
            await owner.abandon()
            start = time.monotonic()
            assert await collect_until(watch, 1) == [("delete", "controller", None)]
            assert time.monotonic() - start < TTL_S + 1.5
            assert await other.get("controller") is None
            assert await other.list("") == []
            taken = await other.put("controller", b"other", expect=ABSENT, leased=True)
            assert taken is not None
            assert await collect_until(watch, 1) == [("put", "controller", b"other")]
        finally:
            await close_watch(watch)


@pytest.mark.asyncio
async def test_large_values_through_a_watch(open_stores: Opener) -> None:
    big = bytes(range(256)) * 2048  # 512 KiB (a watch line of ~700 KB: beyond aiohttp's readline limit)
    async with open_stores(2) as (writer, watcher):
        watch = watcher.watch("")
        try:
            assert (await next_batch(watch)).reset
            await writer.put("assignments", big)
            await writer.put("brokers/1", b"L" * 100_000, leased=True)  # Lease values live in annotations (256 KiB)
            # Only the first two: on a loaded machine a late renewal may already have expired the
            # 2 s lease, which a watcher sees as a delete after the put.
            seen = await collect_until(watch, 2)
            assert seen[:2] == [("put", "assignments", big), ("put", "brokers/1", b"L" * 100_000)], [
                (kind, key, len(value) if value is not None else None) for kind, key, value in seen
            ]
        finally:
            await close_watch(watch)


@pytest.mark.asyncio
async def test_two_sessions_race_for_a_leased_key(open_stores: Opener) -> None:
    async with open_stores(2) as (a, b):
        for round_ in range(5):
            key = f"controller-{round_}"
            results = await asyncio.gather(
                a.put(key, b"a", expect=ABSENT, leased=True), b.put(key, b"b", expect=ABSENT, leased=True)
            )
            winners = [r for r in results if r is not None]
            assert len(winners) == 1
            current = winners[0]
            results = await asyncio.gather(
                a.put(key, b"a2", expect=current.version, leased=True),
                b.put(key, b"b2", expect=current.version, leased=True),
            )
            assert len([r for r in results if r is not None]) == 1


@pytest.mark.asyncio
async def test_session_lost_when_renewals_fail(open_stores: Opener) -> None:
    async with open_stores(1) as (store,):
        lost = asyncio.Event()
        store.on_session_lost(lost.set)
        await store.put("brokers/1", b"x", leased=True)
        good = store.client.config.server
        store.client.config.server = f"https://127.0.0.1:{free_port()}"
        start = time.monotonic()
        await asyncio.wait_for(lost.wait(), TTL_S * 3)
        assert time.monotonic() - start >= TTL_S * 2 / 3  # lost TTL after the last renewal that worked
        store.client.config.server = good
        with pytest.raises(SessionLostError):
            await store.put("brokers/1", b"y", leased=True)


@pytest.mark.asyncio
async def test_watch_relists_after_410_gone() -> None:
    # Without the watch cache, a watch from a compacted resourceVersion gets 410 Gone from etcd
    # (the cache would serve old versions from its own history).
    with run_apiserver("--watch-cache=false") as server:
        api_ns = f"t-{uuid.uuid4().hex[:6]}"
        server.request("POST", "/api/v1/namespaces", {"metadata": {"name": api_ns}})
        writer, watcher = (
            KubernetesStore(api_ns, "c410", TTL_S, name, config=kubeconfig_file_config(server.kubeconfig))
            for name in ("writer", "watcher")
        )
        await writer.open()
        await watcher.open()
        await writer.put("t/a", b"1")
        server.compact_etcd()
        real_list_all = watcher.client.list_all
        calls = 0

        async def stale_list_all(path: str, selector: str, **kw: Any) -> tuple[list[dict[str, Any]], str]:
            nonlocal calls
            calls += 1
            items, rv = await real_list_all(path, selector, **kw)
            return items, "1" if calls <= 2 else rv  # the first listing claims a compacted version

        watcher.client.list_all = stale_list_all  # type: ignore[method-assign,assignment]
        watch = watcher.watch("t/")
        try:
            first = await next_batch(watch)
            assert first.reset
            assert summary(first) == [("put", "t/a", b"1")]
            again = await next_batch(watch)
            assert again.reset, summary(again)
            assert summary(again) == [("put", "t/a", b"1")]
            assert calls >= 3
            await writer.put("t/b", b"2")
            assert await collect_until(watch, 1) == [("put", "t/b", b"2")]
        finally:
            await close_watch(watch)
            await writer.close()
            await watcher.close()


@pytest.mark.asyncio
async def test_watch_resets_after_a_cut_connection(api: ApiServer, namespace: str, open_stores: Opener) -> None:
    proxy = FaultProxy(api.port, cut_every_s=(0.05, 0.1))
    proxy.enabled = False
    proxy.start()
    try:

        def via_proxy() -> KubeConfig:
            cfg = kubeconfig_file_config(api.kubeconfig)
            cfg.server = f"https://127.0.0.1:{proxy.port}"
            return cfg

        async with open_stores(1, config=via_proxy) as (watcher,):
            writer = KubernetesStore(
                namespace, watcher.cluster, TTL_S, "writer", config=kubeconfig_file_config(api.kubeconfig)
            )
            await writer.open()
            watch = watcher.watch("")
            try:
                assert (await next_batch(watch)).events == []
                proxy.enabled = True
                await eventually(_true_after(lambda: proxy.cuts > 0), 5, "the proxy cut the watch")
                proxy.enabled = False
                await writer.put("k", b"written around the cut")
                seen = []
                batch = await next_batch(watch)
                while not batch.reset:  # a cut watch comes back with a reset batch (holding the write, or before it)
                    seen += summary(batch)
                    batch = await next_batch(watch)
                seen += summary(batch)
                if ("put", "k", b"written around the cut") not in seen:
                    seen += await collect_until(watch, 1)
                assert ("put", "k", b"written around the cut") in seen
            finally:
                await close_watch(watch)
                await writer.close()
    finally:
        proxy.stop()


def _true_after(check: Callable[[], bool]) -> Callable[[], Any]:
    async def run() -> bool:
        return check()

    return run


def _rbac_docs(namespace: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
    return docs


@pytest.mark.asyncio
async def test_rbac_role_is_enough(api: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = f"rbac-{uuid.uuid4().hex[:6]}"
    api.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    paths = {"ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts",
             "Role": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
             "RoleBinding": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"}  # fmt: skip
    for doc in _rbac_docs(ns):
        api.request("POST", paths[doc["kind"]], doc)
    token = api.request(
        "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/tidelog-broker/token", {"spec": {"expirationSeconds": 3600}}
    )["status"]["token"]
    kubeconfig = tmp_path / "sa.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": {"server": api.url,
                      "certificate-authority-data": base64.b64encode(api.ca_file.read_bytes()).decode()}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa", "namespace": ns}}],
    }))  # fmt: skip
    config = kubeconfig_file_config(kubeconfig)
    assert config.namespace == ns
    cluster = f"c{uuid.uuid4().hex[:6]}"
    a = KubernetesStore(ns, cluster, TTL_S, "sa-a", config=kubeconfig_file_config(kubeconfig))
    # b as in a pod: the mounted service-account files and KUBERNETES_SERVICE_* (no config given)
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(token)
    (sa_dir / "namespace").write_text(ns)
    shutil.copy(api.ca_file, sa_dir / "ca.crt")
    monkeypatch.setattr(k8s_rest, "SA_DIR", sa_dir)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
    b = KubernetesStore(ns, cluster, TTL_S, "sa-b")
    assert b.client.config.namespace == ns
    assert b.client.config.token_file == str(sa_dir / "token")
    await a.open()
    await b.open()
    watch = b.watch("")
    try:
        assert (await next_batch(watch)).reset
        plain = await a.put("topics/x", b"1", expect=ABSENT)
        assert plain is not None
        assert await a.put("topics/x", b"2", expect=plain.version) is not None
        assert await a.put("topics/x", b"3") is not None
        leased = await a.put("brokers/1", b"up", leased=True)
        assert leased is not None
        await asyncio.sleep(TTL_S)  # renewals (PATCH) happen as the ServiceAccount
        assert await b.get("brokers/1") == leased
        assert [e.key for e in await b.list("")] == ["brokers/1", "topics/x"]
        assert await a.delete("topics/x") is True
        await a.close()
        events = await collect_until(watch, 6)
        assert events[:3] == [("put", "topics/x", b"1"), ("put", "topics/x", b"2"), ("put", "topics/x", b"3")]
        assert sorted(events[3:]) == [
            ("delete", "brokers/1", None),
            ("delete", "topics/x", None),
            ("put", "brokers/1", b"up"),
        ]
        assert events.index(("put", "brokers/1", b"up")) < events.index(("delete", "brokers/1", None))
    finally:
        await close_watch(watch)
        await a.close()
        await b.close()
    # and nothing more: no Secrets, nothing in another namespace

    client = KubeClient(kubeconfig_file_config(kubeconfig))
    await client.open()
    try:
        for path in (f"/api/v1/namespaces/{ns}/secrets", "/api/v1/namespaces/default/configmaps"):
            with pytest.raises(ApiError) as err:
                await client.request("GET", path)
            assert err.value.status == 403
    finally:
        await client.close()
