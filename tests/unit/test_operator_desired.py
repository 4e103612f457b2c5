"""The desired objects of a Cluster (operator/desired*.py), built without a cluster: shapes, names,
labels and selectors that agree, owner references, the broker's command line, and the pod-template
hash that tells the operator which brokers need a restart. (The API server's verdict on the same
objects is e2e/tests/test_crds.py, by server-side dry run.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tidelog.operator import desired, schema
from tidelog.operator.desired_access import METADATA_RULES
from tidelog.operator.models import ClusterSpec
from tidelog.operator.names import HASH_ANNOTATION, ClusterRef

ROOT = Path(__file__).parents[2]
REF = ClusterRef("demo", "prod", "0b5a9d1e-0000-4000-8000-000000000001")


def spec(**fields: Any) -> ClusterSpec:
    return schema.load(ClusterSpec, fields)


def by_kind(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def sts_of(s: ClusterSpec) -> dict[str, Any]:
    return by_kind(desired.desired_objects(REF, s))[("StatefulSet", "demo")]


def container(s: ClusterSpec) -> dict[str, Any]:
    return sts_of(s)["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def test_the_default_cluster_owns_these_objects() -> None:
    objects = desired.desired_objects(REF, spec())
    assert sorted(by_kind(objects)) == [
        ("ConfigMap", "demo-config"),
        ("PodDisruptionBudget", "demo"),
        ("Role", "demo-metadata"),
        ("RoleBinding", "demo-metadata"),
        ("Service", "demo"),
        ("Service", "demo-brokers"),
        ("Service", "demo-metrics"),
        ("ServiceAccount", "demo-broker"),
        ("StatefulSet", "demo"),
    ]
    assert objects[-1]["kind"] == "StatefulSet"  # applied last, after its config and identity
    for obj in objects:
        meta = obj["metadata"]
        assert meta["namespace"] == "prod"
        assert meta["ownerReferences"] == [
            {"apiVersion": "tidelog.dev/v1alpha1", "kind": "Cluster", "name": "demo", "uid": REF.uid,
             "controller": True, "blockOwnerDeletion": True}
        ]  # fmt: skip
        assert meta["labels"]["tidelog.dev/cluster"] == "demo"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "tidelog-operator"


def test_selectors_agree() -> None:
    objects = by_kind(desired.desired_objects(REF, spec()))
    sts = objects[("StatefulSet", "demo")]["spec"]
    pod_labels = sts["template"]["metadata"]["labels"]
    selector = sts["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert REF.selector_string == "app.kubernetes.io/component=broker,tidelog.dev/cluster=demo"
    for name in ("demo", "demo-brokers", "demo-metrics"):
        assert objects[("Service", name)]["spec"]["selector"] == selector
    assert objects[("PodDisruptionBudget", "demo")]["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": selector},
    }
    assert sts["serviceName"] == "demo-brokers"
    headless = objects[("Service", "demo-brokers")]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    assert "publishNotReadyAddresses" not in objects[("Service", "demo")]["spec"]
    ports = {p["name"] for p in container(spec())["ports"]}
    for svc in ("demo", "demo-brokers", "demo-metrics"):
        assert {p["targetPort"] for p in objects[("Service", svc)]["spec"]["ports"]} <= ports


def test_broker_command_line() -> None:
    c = container(spec())
    args = c["args"]
    opt = {args[i]: args[i + 1] for i in range(1, len(args) - 1) if args[i].startswith("--")}
    assert args[0] == "broker"
    assert opt["--broker-id"] == "$(BROKER_ID)"
    assert opt["--metadata"] == "kubernetes://prod/demo"
    assert opt["--advertise"] == "$(POD_NAME).demo-brokers.$(POD_NAMESPACE).svc:9092"
    assert opt["--admin"] == "0.0.0.0:9093"
    assert opt["--config"] == "/etc/tidelog/server.properties"
    assert "--rack" not in opt
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
        "BROKER_ID": "metadata.labels['apps.kubernetes.io/pod-index']",
    }
    used = set(re.findall(r"\$\((\w+)\)", " ".join(args)))
    assert used <= set(env), "every $(VAR) in args must be a container env var"
    assert REF.broker_address(2) == "demo-2.demo-brokers.prod.svc:9092"
    assert REF.admin_address(2) == "demo-2.demo-brokers.prod.svc:9093"
    assert REF.bootstrap_address == "demo.prod.svc:9092"


def test_probes_security_and_grace_period() -> None:
    sts = sts_of(spec(config={"controlled.shutdown.timeout.ms": 60000}))
    pod = sts["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["grpc"] == {"port": 9093}
    assert c["livenessProbe"]["tcpSocket"] == {"port": 9092}
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 3600
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == 10001
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["terminationGracePeriodSeconds"] == 60 + 10 + desired.SHUTDOWN_MARGIN_S
    assert sts_of(spec())["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30 + 10 + 30
    assert pod["serviceAccountName"] == "demo-broker"
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert sts["spec"]["podManagementPolicy"] == "Parallel"


def test_storage_resources_and_image() -> None:
    s = spec(
        version="0.2.0",
        storage={"size": "50Gi", "storageClassName": "fast", "deleteClaim": True},
        resources={"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    )
    sts = sts_of(s)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "50Gi"}},
        "storageClassName": "fast",
    }
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Delete"}
    assert sts_of(spec())["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    assert "storageClassName" not in sts_of(spec())["spec"]["volumeClaimTemplates"][0]["spec"]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    assert c["image"] == "tidelog/broker:0.2.0"
    assert container(spec(image="registry.local/tl:dev"))["image"] == "registry.local/tl:dev"
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/var/lib/tidelog/data", "/etc/tidelog"}
    assert REF.pvc(4) == "data-demo-4"


def test_config_map_holds_server_properties() -> None:
    cm = desired.config_map(REF, spec(config={"num.partitions": 6, "auto.create.topics.enable": "false"}))
    text = cm["data"]["server.properties"]
    assert [line for line in text.splitlines() if not line.startswith("#")] == [
        "auto.create.topics.enable=false",
        "num.partitions=6",
    ]
    with pytest.raises(desired.InvalidSpecError, match="line break"):
        desired.server_properties(spec(config={"log.retention.ms": "1\nnode.id=7"}))
    with pytest.raises(desired.InvalidSpecError, match=r"node\.id"):
        desired.server_properties(spec(config={"node.id": 3}))


def test_a_config_or_image_change_is_a_roll_a_scale_is_not() -> None:
    def digest(s: ClusterSpec, replicas: int | None = None) -> str:
        sts = desired.statefulset(REF, s, desired.config_map(REF, s), replicas)
        pod_hash = sts["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION]
        assert sts["metadata"]["annotations"][HASH_ANNOTATION] == pod_hash
        return str(pod_hash)

    base = digest(spec(replicas=3))
    assert digest(spec(replicas=3)) == base  # stable
    assert digest(spec(replicas=5)) == base
    assert digest(spec(replicas=3), replicas=4) == base
    assert digest(spec(config={"log.retention.ms": 1000})) != base
    assert digest(spec(version="0.2.0")) != base
    assert digest(spec(resources={"limits": {"memory": "2Gi"}})) != base
    assert digest(spec(pod={"annotations": {"a": "b"}})) != base


def test_replicas_override_for_a_scale_down_in_progress() -> None:
    s = spec(replicas=3)
    assert sts_of(s)["spec"]["replicas"] == 3
    assert desired.statefulset(REF, s, desired.config_map(REF, s), replicas=5)["spec"]["replicas"] == 5


def test_rack_topology_spread_and_pod_options() -> None:
    s = spec(
        rack={},
        topologySpread=[{"topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}],
        pod={"nodeSelector": {"disk": "ssd"}, "labels": {"team": "a", "tidelog.dev/cluster": "evil"},
             "tolerations": [{"key": "dedicated", "value": "kafka", "effect": "NoSchedule"}],
             "priorityClassName": "high"},
    )  # fmt: skip
    pod = sts_of(s)["spec"]["template"]
    c = pod["spec"]["containers"][0]
    assert c["args"][-2:] == ["--rack", "$(BROKER_RACK)"]
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env["BROKER_RACK"] == "metadata.labels['topology.kubernetes.io/zone']"
    assert pod["spec"]["topologySpreadConstraints"] == [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": {"matchLabels": REF.selector_labels()}}
    ]  # fmt: skip
    assert pod["metadata"]["labels"]["team"] == "a"
    assert pod["metadata"]["labels"]["tidelog.dev/cluster"] == "demo"  # the operator's labels win
    assert pod["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert pod["spec"]["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "kafka",
                                           "effect": "NoSchedule"}]  # fmt: skip
    assert pod["spec"]["priorityClassName"] == "high"


def test_external_listener_services() -> None:
    s = spec(replicas=3, listeners={"external": {"type": "NodePort", "nodePortBase": 31000}})
    objects = by_kind(desired.desired_objects(REF, s))
    boot = objects[("Service", "demo-external-bootstrap")]["spec"]
    assert boot["type"] == "NodePort"
    assert boot["ports"][0]["nodePort"] == 30999
    for broker in range(3):
        svc = objects[("Service", f"demo-{broker}-external")]
        assert svc["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == f"demo-{broker}"
        assert svc["spec"]["ports"][0]["nodePort"] == 31000 + broker
        assert svc["metadata"]["labels"]["tidelog.dev/broker-id"] == str(broker)
    assert ("Service", "demo-3-external") not in objects
    lb = spec(listeners={"external": {"type": "LoadBalancer", "annotations": {"x/y": "z"}}})
    svc = by_kind(desired.desired_objects(REF, lb))[("Service", "demo-0-external")]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert "nodePort" not in svc["spec"]["ports"][0]
    assert svc["metadata"]["annotations"] == {"x/y": "z"}
    with pytest.raises(ValueError, match="nodePortBase"):
        desired.desired_objects(REF, spec(replicas=3, listeners={"external": {"type": "NodePort",
                                                                              "nodePortBase": 32766}}))  # fmt: skip


def test_external_listener_brokers_advertise_their_own_service() -> None:
    node_port = spec(replicas=2, listeners={"external": {"type": "NodePort"}})
    c = container(node_port)
    args = " ".join(c["args"])
    assert "--listen INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:9094" in args
    # The node's address from the downward API, the port from this broker's line of external.properties.
    assert "EXTERNAL://$(HOST_IP):${file:/etc/tidelog/external.properties:broker.$(BROKER_ID).port}" in args
    assert "inter.broker.listener.name=INTERNAL" in args
    assert {"name": "HOST_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}}} in c[
        "env"
    ]
    assert {"name": "external", "containerPort": 9094, "protocol": "TCP"} in c["ports"]
    objects = by_kind(desired.desired_objects(REF, node_port, external={0: desired.ExternalAddress(node_port=31500)}))
    data = objects[("ConfigMap", "demo-config")]["data"]
    assert "broker.0.port=31500\n" in data["external.properties"]
    assert objects[("Service", "demo-1-external")]["spec"]["ports"][0]["targetPort"] == "external"
    lb = container(spec(listeners={"external": {"type": "LoadBalancer"}}))
    assert "EXTERNAL://${file:/etc/tidelog/external.properties:broker.$(BROKER_ID).host}:9094" in " ".join(lb["args"])
    assert "HOST_IP" not in {e["name"] for e in lb["env"]}


def test_external_addresses_do_not_roll_the_brokers() -> None:
    s = spec(replicas=3, listeners={"external": {"type": "NodePort"}})
    before = sts_of(s)["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION]
    objects = by_kind(desired.desired_objects(REF, s, external={3: desired.ExternalAddress(node_port=31003)}))
    after = objects[("StatefulSet", "demo")]["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION]
    assert before == after  # a scale-up's new line in external.properties
    plain = sts_of(spec(replicas=3))["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION]
    assert plain != before  # turning the external listener on is a roll


def test_metrics_service_follows_spec() -> None:
    objects = by_kind(desired.desired_objects(REF, spec(metrics={"enabled": False})))
    assert ("Service", "demo-metrics") not in objects
    s = spec(metrics={"port": 9500})
    metrics = by_kind(desired.desired_objects(REF, s))[("Service", "demo-metrics")]
    assert metrics["spec"]["ports"][0]["port"] == 9500
    assert "9500" in container(s)["args"]


def test_rbac_matches_the_metadata_manifest() -> None:
    manifest = list(yaml.safe_load_all((ROOT / "e2e/manifests/metadata-rbac.yaml").read_text()))
    (role,) = [d for d in manifest if d["kind"] == "Role"]
    assert role["rules"] == METADATA_RULES
    objects = by_kind(desired.desired_objects(REF, spec()))
    binding = objects[("RoleBinding", "demo-metadata")]
    assert binding["roleRef"]["name"] == "demo-metadata"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "demo-broker", "namespace": "prod"}]
    assert objects[("Role", "demo-metadata")]["rules"] == METADATA_RULES


def test_builders_do_not_mutate_their_input() -> None:
    s = spec(resources={"limits": {"memory": "1Gi"}}, pod={"labels": {"a": "b"}})
    before = schema.dump(s)
    sts = sts_of(s)
    sts["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "9Gi"
    sts["spec"]["template"]["metadata"]["labels"]["a"] = "c"
    assert schema.dump(s) == before
