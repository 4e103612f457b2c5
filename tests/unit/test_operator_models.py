"""The typed models, the schema builder and the CRDs built from them (no cluster needed; the API
server's own verdict on the CRDs is e2e/tests/test_crds.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tidelog.operator import crd, models, schema


def _spec_schema(c: dict[str, Any], part: str = "spec") -> dict[str, Any]:
    (version,) = c["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]["properties"][part]  # type: ignore[no-any-return]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for key in ("properties",):
            for name, child in node.get(key, {}).items():
                out += _walk(child, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                out += _walk(node[key], f"{path}[]")
    return out


def test_cluster_crd_names_and_subresources() -> None:
    c = crd.cluster_crd()
    assert c["metadata"]["name"] == "clusters.tidelog.dev"
    names = c["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "Cluster", "clusters", ["tlc"], ["tidelog"],
    )  # fmt: skip
    (version,) = c["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.readyReplicas",
        "labelSelectorPath": ".status.labelSelector",
    }
    columns = {col["name"]: col["jsonPath"] for col in version["additionalPrinterColumns"]}
    assert columns["Desired"] == ".spec.replicas"
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert "Age" in columns
    status = _spec_schema(c, "status")["properties"]
    for key in ("observedGeneration", "conditions", "readyReplicas", "labelSelector", "controllerId",
                "underReplicatedPartitions", "offlinePartitions", "bootstrapAddress", "scaling", "roll"):  # fmt: skip
        assert key in status, key
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_topic_crd_partitions_may_only_grow() -> None:
    t = crd.topic_crd()
    assert t["spec"]["names"]["shortNames"] == ["tlt"]
    assert t["spec"]["names"]["categories"] == ["tidelog"]
    spec = _spec_schema(t)
    assert spec["required"] == ["clusterRef", "partitions", "replicas"]
    partitions = spec["properties"]["partitions"]
    assert partitions["minimum"] == 1
    assert {"rule": "self >= oldSelf", "message": "partitions may not decrease", "reason": "FieldValueForbidden"} in (
        partitions["x-kubernetes-validations"]
    )
    assert spec["properties"]["topicName"]["pattern"] == models.TOPIC_NAME_PATTERN


def test_cluster_spec_validation_keywords() -> None:
    spec = _spec_schema(crd.cluster_crd())["properties"]
    assert spec["replicas"]["minimum"] == 1
    assert spec["replicas"]["default"] == 3
    assert spec["imagePullPolicy"]["enum"] == ["Always", "IfNotPresent", "Never"]
    assert spec["storage"]["properties"]["size"]["pattern"] == schema.QUANTITY_PATTERN
    assert spec["storage"]["default"] == {}  # nested defaults apply when storage is left out
    assert spec["listeners"]["properties"]["external"]["properties"]["type"]["enum"] == ["NodePort", "LoadBalancer"]
    assert spec["config"]["additionalProperties"] == {"x-kubernetes-int-or-string": True}
    rules = [r["rule"] for r in spec["config"]["x-kubernetes-validations"]]
    assert any("'node.id'" in r and "'advertised.listeners'" in r for r in rules)
    assert spec["resources"]["properties"]["limits"]["additionalProperties"] == {"x-kubernetes-int-or-string": True}


@pytest.mark.parametrize("c", [crd.cluster_crd(), crd.topic_crd(), crd.user_crd()], ids=["cluster", "topic", "user"])
def test_schemas_are_structural(c: dict[str, Any]) -> None:
    """Every node has a type (or is int-or-string / preserves unknown fields), and every property
    has a description, as the API server and `kubectl explain` want."""
    (version,) = c["spec"]["versions"]
    for path, node in _walk(version["schema"]["openAPIV3Schema"]):
        assert (
            "type" in node or node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        ), path
        if path.count(".") >= 2 and not path.endswith("[]"):
            assert node.get("description"), f"{path} has no description"


def test_load_fills_defaults_and_converts_camel_case() -> None:
    spec = schema.load(
        models.ClusterSpec,
        {
            "replicas": 5,
            "storage": {"size": "1Gi", "deleteClaim": True},
            "listeners": {"external": {"type": "NodePort", "nodePortBase": 31000}},
            "topologySpread": [{"topologyKey": "kubernetes.io/hostname"}],
            "config": {"log.retention.ms": 1000},
            "unknownField": "ignored",
        },
    )
    assert spec.replicas == 5
    assert spec.storage == models.Storage(size="1Gi", storage_class_name=None, delete_claim=True)
    assert spec.listeners.external is not None
    assert spec.listeners.external.node_port_base == 31000
    assert spec.topology_spread == [models.TopologySpread(topology_key="kubernetes.io/hostname")]
    assert spec.metrics.port == 9404
    assert spec.version == models.DEFAULT_VERSION


def test_dump_is_camel_case_and_round_trips() -> None:
    status = models.ClusterStatus(
        observed_generation=3,
        conditions=[models.Condition(type="Ready", status="True", reason="Reconciled", message="ok")],
        ready_replicas=3,
        scaling=models.ScalingStatus(phase="Draining", from_replicas=5, to_replicas=3, brokers=[3, 4]),
    )
    out = schema.dump(status)
    assert out["observedGeneration"] == 3
    assert out["scaling"] == {"phase": "Draining", "fromReplicas": 5, "toReplicas": 3, "brokers": [3, 4]}
    assert "roll" not in out  # None fields are left out
    assert schema.load(models.ClusterStatus, out) == status


def test_defaults_in_schema_match_the_models() -> None:
    """What the API server fills in (CRD defaults) equals what ``load`` fills in (Python defaults)."""
    spec = _spec_schema(crd.cluster_crd())["properties"]
    python = models.ClusterSpec()
    assert spec["version"]["default"] == python.version
    assert spec["storage"]["properties"]["size"]["default"] == python.storage.size
    assert spec["metrics"]["properties"]["port"]["default"] == python.metrics.port


def test_patterns_accept_and_reject() -> None:
    assert schema.matches(schema.QUANTITY_PATTERN, "10Gi")
    assert schema.matches(schema.QUANTITY_PATTERN, "500m")
    assert not schema.matches(schema.QUANTITY_PATTERN, "ten gigs")
    assert schema.matches(models.TOPIC_NAME_PATTERN, "orders.v1_x-y")
    assert not schema.matches(models.TOPIC_NAME_PATTERN, "bad/name")
    assert schema.matches(models.SEMVER_PATTERN, "0.1.0-e2e")
    assert not schema.matches(models.SEMVER_PATTERN, "latest")


def test_field_without_schema_is_an_error() -> None:
    import dataclasses

    @dataclasses.dataclass
    class Bad:
        x: int = 1

    with pytest.raises(TypeError, match="no schema"):
        schema.object_schema(Bad)
