"""The generated CRDs and desired objects against a real kube-apiserver (no nodes, no operator).

Applies crds/*.yaml, then checks that the API server accepts valid Clusters and Topics (filling in
the schema's defaults), rejects nonsense (negative replicas, a partition decrease by the CEL
transition rule, unknown fields under strict field validation, operator-managed broker properties,
a storage shrink), serves the scale and status subresources, and accepts every object
``tidelog.operator.desired`` builds (server-side dry run with strict field validation, so a
misspelt field of a StatefulSet fails here, not in a cluster). Needs only the cached etcd and
kube-apiserver binaries (e2e/support/apiserver.py).
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from apiserver import ApiServer, run_apiserver  # type: ignore[import-not-found]

from tidelog.operator import crd, desired, desired_tls, schema
from tidelog.operator.models import ClusterSpec
from tidelog.operator.names import ClusterRef

ROOT = Path(__file__).resolve().parents[2]
GROUP_PATH = "/apis/tidelog.dev/v1alpha1"
MERGE = "application/merge-patch+json"


class Api:
    """JSON requests that return (status code, body) instead of raising, to test rejections."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server
        self.ctx: ssl.SSLContext = server.admin_ssl()

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server.url + path, data=data, method=method)  # noqa: S310 (own apiserver)
        req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:  # noqa: S310
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read() or b"{}"
            try:
                return exc.code, json.loads(raw)
            except ValueError:  # "404 page not found" for a version not served (yet)
                return exc.code, {"message": raw.decode(errors="replace")}

    def ok(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        code, out = self.call(method, path, body, content_type)
        assert code in (200, 201), f"{method} {path}: {code} {out.get('message', out)}"
        return out

    def rejected(self, method: str, path: str, body: Any, content_type: str = "application/json") -> str:
        code, out = self.call(method, path, body, content_type)
        # 422 Invalid (schema, CEL); 400 BadRequest (strict decoding: an unknown field)
        assert code in (400, 422), f"{method} {path} was not rejected: {code} {out}"
        return str(out.get("message", ""))


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with run_apiserver() as server:
        a = Api(server)
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            a.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(path.read_text()))
        deadline = time.monotonic() + 30
        while not all(_established(a, n) for n in ("clusters", "topics")):
            assert time.monotonic() < deadline, "CRDs not Established in 30 s"
            time.sleep(0.2)
        yield a


def _established(a: Api, plural: str) -> bool:
    crd = a.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.tidelog.dev")
    conditions = crd.get("status", {}).get("conditions", [])
    ok = any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
    # Discovery may lag Established by a moment: wait until the resource is served too.
    return ok and a.call("GET", f"{GROUP_PATH}/{plural}")[0] == 200


@pytest.fixture(scope="module")
def ns(api: Api) -> str:
    name = f"t-{uuid.uuid4().hex[:6]}"
    api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


def _cluster(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "tidelog.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": name}, "spec": spec}


def _topic(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "tidelog.dev/v1alpha1", "kind": "Topic", "metadata": {"name": name}, "spec": spec}


def test_a_minimal_cluster_gets_the_defaults(api: Api, ns: str) -> None:
    created = api.ok("POST", f"{GROUP_PATH}/namespaces/{ns}/clusters", _cluster("minimal"))
    spec = created["spec"]
    assert spec["replicas"] == 3
    assert spec["storage"] == {"size": "10Gi", "deleteClaim": False}
    assert spec["metrics"] == {"enabled": True, "port": 9404}
    # What the API server fills in is what the operator's model fills in.
    assert schema.dump(schema.load(ClusterSpec, spec))["storage"] == spec["storage"]


def test_cluster_nonsense_is_rejected(api: Api, ns: str) -> None:
    path = f"{GROUP_PATH}/namespaces/{ns}/clusters"
    assert "spec.replicas" in api.rejected("POST", path, _cluster("neg", replicas=-1))
    assert "unknown field" in api.rejected("POST", path + "?fieldValidation=Strict", _cluster("typo", replica=3))
    assert "set by the operator" in api.rejected("POST", path, _cluster("managed", config={"node.id": "1"}))
    api.rejected("POST", path, _cluster("boolean", config={"auto.create.topics.enable": False}))
    api.rejected("POST", path, _cluster("nested", config={"a": {"b": 1}}))
    api.rejected("POST", path, _cluster("size", storage={"size": "lots"}))
    api.rejected("POST", path, _cluster("listener", listeners={"external": {"type": "Ingress"}}))
    api.rejected("POST", path, _cluster("version", version="latest"))


def test_cluster_storage_may_grow_but_not_shrink(api: Api, ns: str) -> None:
    path = f"{GROUP_PATH}/namespaces/{ns}/clusters"
    api.ok("POST", path, _cluster("disks", storage={"size": "10Gi", "storageClassName": "fast"}))
    api.ok("PATCH", f"{path}/disks", {"spec": {"storage": {"size": "20Gi"}}}, MERGE)
    assert "may grow but not shrink" in api.rejected(
        "PATCH", f"{path}/disks", {"spec": {"storage": {"size": "5Gi"}}}, MERGE
    )
    assert "cannot change" in api.rejected(
        "PATCH", f"{path}/disks", {"spec": {"storage": {"storageClassName": "slow"}}}, MERGE
    )


def test_scale_and_status_subresources(api: Api, ns: str) -> None:
    path = f"{GROUP_PATH}/namespaces/{ns}/clusters"
    api.ok("POST", path, _cluster("scaled", replicas=3))
    ref = ClusterRef("scaled", ns, "unused")
    status = {"status": {"readyReplicas": 3, "labelSelector": ref.selector_string, "observedGeneration": 1,
                         "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "",
                                         "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                         "scaling": {"phase": "Idle"}, "bootstrapAddress": ref.bootstrap_address}}  # fmt: skip
    api.ok("PATCH", f"{path}/scaled/status", status, MERGE)
    scale = api.ok("GET", f"{path}/scaled/scale")
    assert scale["spec"]["replicas"] == 3
    assert scale["status"] == {"replicas": 3, "selector": ref.selector_string}
    scale["spec"]["replicas"] = 5
    api.ok("PUT", f"{path}/scaled/scale", scale)
    cluster = api.ok("GET", f"{path}/scaled")
    assert cluster["spec"]["replicas"] == 5
    assert cluster["status"]["conditions"][0]["reason"] == "Reconciled"  # declared status fields are kept
    scale["spec"]["replicas"] = 0
    api.rejected("PUT", f"{path}/scaled/scale", {**scale, "metadata": {"name": "scaled", "namespace": ns}})
    bad = {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}
    api.rejected("PATCH", f"{path}/scaled/status", bad, MERGE)


def test_topic_partitions_may_not_decrease(api: Api, ns: str) -> None:
    path = f"{GROUP_PATH}/namespaces/{ns}/topics"
    api.ok("POST", path, _topic("orders", clusterRef={"name": "demo"}, partitions=6, replicas=3,
                                config={"retention.ms": 60000, "cleanup.policy": "delete"}))  # fmt: skip
    api.ok("PATCH", f"{path}/orders", {"spec": {"partitions": 8}}, MERGE)
    message = api.rejected("PATCH", f"{path}/orders", {"spec": {"partitions": 3}}, MERGE)
    assert "partitions may not decrease" in message
    assert "cannot change" in api.rejected("PATCH", f"{path}/orders", {"spec": {"clusterRef": {"name": "x"}}}, MERGE)
    assert "cannot be added" in api.rejected("PATCH", f"{path}/orders", {"spec": {"topicName": "other"}}, MERGE)
    api.ok("PATCH", f"{path}/orders", {"spec": {"replicas": 2}}, MERGE)  # RF changes are allowed


def test_topic_nonsense_is_rejected(api: Api, ns: str) -> None:
    path = f"{GROUP_PATH}/namespaces/{ns}/topics"
    good = {"clusterRef": {"name": "demo"}, "partitions": 1, "replicas": 1}
    api.rejected("POST", path, _topic("zero", **{**good, "partitions": 0}))
    api.rejected("POST", path, _topic("name", **{**good, "topicName": "bad/name"}))
    api.rejected("POST", path, _topic("nocluster", partitions=1, replicas=1))
    api.rejected("POST", path, _topic("key", **{**good, "config": {"Bad Key": "1"}}))
    assert "unknown field" in api.rejected(
        "POST", path + "?fieldValidation=Strict", _topic("typo", **good, partition=3)
    )
    renamed = api.ok("POST", path, _topic("named", **{**good, "topicName": "Orders.V2"}))
    assert renamed["spec"]["topicName"] == "Orders.V2"
    assert "cannot change" in api.rejected("PATCH", f"{path}/named", {"spec": {"topicName": "x"}}, MERGE)


PATHS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "Service": "/api/v1/namespaces/{ns}/services",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
}


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {
            "replicas": 3,
            "storage": {"size": "5Gi", "storageClassName": "local", "deleteClaim": True},
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": 1073741824}},
            "config": {"num.partitions": 6, "min.insync.replicas": "2"},
            "listeners": {"external": {"type": "NodePort", "nodePortBase": 31090, "annotations": {"a/b": "c"}}},
            "rack": {},
            "topologySpread": [{"topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}],
            "metrics": {"port": 9500},
            "pod": {
                "annotations": {"x": "y"},
                "nodeSelector": {"disk": "ssd"},
                "priorityClassName": "high",
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}],
            },
        },
        {"listeners": {"external": {"type": "LoadBalancer"}}, "metrics": {"enabled": False}},
        {
            "listeners": {
                "internal": {"tls": True, "authentication": "tls"},
                "external": {
                    "type": "LoadBalancer",
                    "tls": True,
                    "authentication": "scram-sha-512",
                    "alternativeNames": ["kafka.example.com"],
                },
            },
            "certificates": {"validityDays": 30, "renewBeforeDays": 10},
        },
    ],
    ids=["defaults", "everything", "loadbalancer", "tls"],
)
def test_desired_objects_pass_the_api_servers_validation(api: Api, ns: str, spec: dict[str, Any]) -> None:
    """The builders' output, from a spec as the API server defaulted it, by strict server-side dry run."""
    name = f"c{uuid.uuid4().hex[:5]}"
    created = api.ok("POST", f"{GROUP_PATH}/namespaces/{ns}/clusters", _cluster(name, **spec))
    ref = ClusterRef.from_body(created)
    cluster_spec = schema.load(ClusterSpec, created["spec"])
    objects = desired.desired_objects(ref, cluster_spec)
    if desired_tls.secured(cluster_spec):  # the Secrets and the pod template that mounts them
        names = {b: desired_tls.broker_sans(ref, b, ("kafka.example.com",)) for b in range(cluster_spec.replicas)}
        pki = desired_tls.plan_pki(ref, cluster_spec, None, None, names, {}, datetime.now(UTC))
        objects = [
            *desired.desired_objects(ref, cluster_spec, certificates=pki.annotation),
            desired_tls.ca_secret(ref, pki.ca),
            desired_tls.broker_secret(ref, pki.certs, pki.ca.bundle),
            desired_tls.ca_cert_secret(ref, pki.ca.bundle, pki.ca.generation),
        ]
    for obj in objects:
        path = PATHS[obj["kind"]].format(ns=ns) + "?dryRun=All&fieldValidation=Strict"
        code, out = api.call("POST", path, obj)
        assert code in (200, 201), f"{obj['kind']} {obj['metadata']['name']}: {code} {out.get('message', out)}"
        assert out["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]


def test_the_crd_version_can_move_on_without_breaking_existing_resources() -> None:
    """The path operator/crd.py describes, with a made-up next version ``v1beta9``: existing
    v1alpha1 objects are served as both, then stored as the new one, and stay readable as the old."""
    crds_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    with run_apiserver() as server:
        a = Api(server)
        a.ok("POST", crds_path, crd.cluster_crd())
        _wait_served(a, "v1alpha1")
        a.ok("POST", "/api/v1/namespaces", {"metadata": {"name": "up"}})
        old = a.ok("POST", "/apis/tidelog.dev/v1alpha1/namespaces/up/clusters", _cluster("kept", replicas=5))
        # Release N+1: the new version served, the old one still stored.
        _replace_crd(a, crd.cluster_crd(served=("v1alpha1", "v1beta9"), storage="v1alpha1"))
        _wait_served(a, "v1beta9")
        as_new = a.ok("GET", "/apis/tidelog.dev/v1beta9/namespaces/up/clusters/kept")
        assert (as_new["apiVersion"], as_new["spec"]) == ("tidelog.dev/v1beta9", old["spec"])
        # Release N+2: the new version stored; an update through it rewrites the object.
        _replace_crd(a, crd.cluster_crd(served=("v1alpha1", "v1beta9"), storage="v1beta9"))
        a.ok("PATCH", "/apis/tidelog.dev/v1beta9/namespaces/up/clusters/kept", {"spec": {"replicas": 6}}, MERGE)
        as_old = a.ok("GET", "/apis/tidelog.dev/v1alpha1/namespaces/up/clusters/kept")
        assert (as_old["apiVersion"], as_old["spec"]["replicas"]) == ("tidelog.dev/v1alpha1", 6)
        stored = a.ok("GET", f"{crds_path}/clusters.tidelog.dev")["status"]["storedVersions"]
        assert set(stored) == {"v1alpha1", "v1beta9"}  # what a cleanup must check before dropping v1alpha1
    with pytest.raises(ValueError, match="storage version v9 is not served"):
        crd.cluster_crd(served=("v1alpha1",), storage="v9")


def _replace_crd(a: Api, new: dict[str, Any]) -> None:
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{new['metadata']['name']}"
    current = a.ok("GET", path)
    new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    a.ok("PUT", path, new)


def _wait_served(a: Api, version: str) -> None:
    deadline = time.monotonic() + 30
    while a.call("GET", f"/apis/tidelog.dev/{version}/clusters")[0] != 200:
        assert time.monotonic() < deadline, f"tidelog.dev/{version} not served within 30 s"
        time.sleep(0.2)
