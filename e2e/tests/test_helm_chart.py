"""The Helm chart helm/tidelog: `helm lint`, rendering with the defaults and with every option on,
and values.schema.json rejecting unknown keys and bad values. What needs components a test cluster
lacks (Prometheus Operator CRDs, Grafana) is checked here by rendering: the alert rules with
`promtool check rules`, the dashboard as JSON whose queries name the broker's real metrics.

helm and promtool come from the e2e component cache (e2e/cluster/local/build.sh), or $HELM /
$PROMTOOL, or PATH; the tests fail, saying how to get them, when they are missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tidelog.operator import crdgen

ROOT = Path(__file__).parents[2]
CHART = ROOT / "helm" / "tidelog"
KUBE_VERSION = "1.36.5"  # `helm template` assumes v1.20 otherwise, below the chart's kubeVersion
ALL_OPTIONS: dict[str, Any] = {
    "watchNamespaces": ["team-a", "team-b"],
    "applyCRDs": False,
    "imagePullSecrets": [{"name": "regcred"}],
    "podAnnotations": {"a": "b"},
    "podLabels": {"team": "x"},
    "priorityClassName": "high",
    "nodeSelector": {"disk": "ssd"},
    "tolerations": [{"key": "k", "operator": "Exists"}],
    "serviceAccount": {"annotations": {"x": "z"}},
    "cluster": {
        "enabled": True,
        "name": "demo",
        "spec": {
            "replicas": 3,
            "storage": {"size": "20Gi", "deleteClaim": True},
            "config": {"num.partitions": 6, "min.insync.replicas": "2"},
            "listeners": {
                "internal": {"tls": True, "authentication": "tls"},
                "external": {
                    "type": "NodePort",
                    "nodePortBase": 31000,
                    "tls": True,
                    "authentication": "scram-sha-512",
                    "alternativeNames": ["kafka.example.com"],
                },
            },
            "certificates": {
                "caValidityDays": 730,
                "validityDays": 90,
                "renewBeforeDays": 20,
                "issuer": {"name": "ca-issuer", "kind": "ClusterIssuer"},
            },
            "rack": {"topologyKey": "topology.kubernetes.io/zone"},
        },
    },
    "topics": [
        {"name": "orders", "spec": {"partitions": 6, "replicas": 3, "config": {"retention.ms": 60000}}},
        {"name": "events", "spec": {"clusterRef": {"name": "other"}, "partitions": 1, "replicas": 1}},
    ],
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
    },
}


def _tool(name: str, cache_glob: str) -> str:
    """$NAME, else the e2e cache's build (``cache_glob`` under the cache dir), else PATH."""
    cache = Path(os.environ.get("TIDELOG_E2E_CACHE", "/var/cache/tidelog-e2e"))
    versions = dict(
        line.split("=", 1)
        for line in (ROOT / "e2e/cluster/versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    cached = sorted(cache.glob(f"{cache_glob.format(**versions)}/bin/{name}"))
    for candidate in [os.environ.get(name.upper()), *map(str, cached), shutil.which(name)]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"no {name}: build it with `e2e/cluster/local/build.sh` (cached under {cache}), or set ${name.upper()}")


@pytest.fixture(scope="module")
def helm() -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = _tool("helm", "helm-{HELM_VERSION}")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([binary, *args], capture_output=True, text=True, check=False, timeout=120)
        if check:
            assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    return run


def _values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def render(helm: Callable[..., subprocess.CompletedProcess[str]], *args: str) -> list[dict[str, Any]]:
    out = helm("template", "t", str(CHART), "--namespace", "ops", "--kube-version", KUBE_VERSION, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def test_lint(helm: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)
    helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, "-f", _values_file(tmp_path, ALL_OPTIONS))


def test_defaults_render_the_operator_only(helm: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    docs = render(helm)
    assert kinds(docs) == ["ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
                           "Deployment", "Service", "ServiceAccount"]  # fmt: skip
    (deploy,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deploy["metadata"]["namespace"] == "ops"
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    pod = deploy["spec"]["template"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "tidelog/operator:0.1.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TIDELOG_OPERATOR_WATCH_NAMESPACES"] == ""
    assert env["TIDELOG_OPERATOR_APPLY_CRDS"] == "true"
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    rules = [r for role in roles.values() for r in role["rules"]]
    assert any("customresourcedefinitions" in r["resources"] and "patch" in r["verbs"] for r in rules)
    assert any("statefulsets" in r["resources"] for r in rules)


def test_crds_ship_in_the_chart(helm: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    docs = render(helm, "--include-crds")
    crds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert set(crds) == {"clusters.tidelog.dev", "topics.tidelog.dev", "users.tidelog.dev"}
    for name, text in crdgen.render().items():
        assert yaml.safe_load(text) == crds[yaml.safe_load(text)["metadata"]["name"]], name


def test_every_option_on(helm: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    docs = render(helm, "-f", _values_file(tmp_path, ALL_OPTIONS))
    expected = "Cluster ClusterRole ClusterRoleBinding ConfigMap Deployment PodMonitor PrometheusRule Role Role"
    expected += " RoleBinding RoleBinding Service ServiceAccount ServiceMonitor ServiceMonitor Topic Topic"
    assert kinds(docs) == sorted(expected.split())
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    (global_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert not any("patch" in r["verbs"] for r in global_role["rules"])  # applyCRDs: false -> read only
    assert not any("namespaces" in r["resources"] for r in global_role["rules"])
    (cluster,) = [d for d in docs if d["kind"] == "Cluster"]
    assert cluster["metadata"] == {**cluster["metadata"], "name": "demo", "namespace": "ops"}
    assert cluster["spec"] == ALL_OPTIONS["cluster"]["spec"]
    topics = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Topic"}
    assert topics["orders"]["clusterRef"] == {"name": "demo"}  # defaults to the chart's Cluster
    assert topics["events"]["clusterRef"] == {"name": "other"}
    (dashboard,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert all(m["metadata"]["labels"]["release"] == "prom" for m in monitors)
    assert monitors[0]["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    for role in roles:  # TLS listeners: the operator keeps the CA and broker certificates in Secrets
        rules = {
            (g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
        }
        assert {"get", "create", "patch"} <= rules[("", "secrets")]
        assert {"get", "create", "patch"} <= rules[("cert-manager.io", "certificates")]


def _broker_metric_names() -> set[str]:
    source = (ROOT / "broker/metrics/broker_metrics.py").read_text()
    names = set(re.findall(r'"(tidelog_[a-z_]+)"', source))
    counters = set(re.findall(r'Counter\(\s*"(tidelog_[a-z_]+)"', source))
    histograms = set(re.findall(r'Histogram\(\s*"(tidelog_[a-z_]+)"', source))
    return names | {f"{n}_total" for n in counters} | {f"{n}_bucket" for n in histograms}


def test_dashboard_and_alerts_use_real_metric_names(
    helm: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    docs = render(helm, "-f", _values_file(tmp_path, ALL_OPTIONS))
    known = _broker_metric_names()
    (dashboard,) = [d for d in docs if d["kind"] == "ConfigMap"]
    board = json.loads(dashboard["data"]["tidelog.json"])
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    for required in ("tidelog_bytes_in_total", "tidelog_consumer_lag", "tidelog_replica_under_replicated_partitions",
                     "tidelog_request_latency_seconds_bucket"):  # fmt: skip
        assert any(required in e for e in exprs), f"dashboard lacks {required}"
    for alert, metric in (("TidelogOfflinePartitions", "tidelog_controller_offline_partitions"),
                          ("TidelogUnderMinIsrPartitions", "tidelog_replica_under_min_isr_partitions"),
                          ("TidelogConsumerLagGrowing", "tidelog_consumer_lag"),
                          ("TidelogVolumeFillingUp", "kubelet_volume_stats_available_bytes")):  # fmt: skip
        assert metric in alerts[alert]
    for expr in [*exprs, *(e for a, e in alerts.items() if not a.startswith("TidelogOperator"))]:
        for name in set(re.findall(r"\btidelog_[a-z_]+", expr)) - {"tidelog_cluster"}:  # a label
            assert name in known, f"{name} is not a broker metric (broker/metrics/broker_metrics.py)"
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    promtool = _tool("promtool", "prometheus-*")
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"bogus": 1}, "additional properties 'bogus' not allowed"),
        ({"monitoring": {"serviceMonitor": {"enable": True}}}, "additional properties 'enable' not allowed"),
        ({"cluster": {"spec": {"replica": 3}}}, "additional properties 'replica' not allowed"),
        ({"cluster": {"spec": {"replicas": -1}}}, "minimum"),
        ({"cluster": {"spec": {"storage": {"size": "lots"}}}}, "/cluster/spec/storage/size"),
        ({"topics": [{"name": "t", "spec": {"partitions": 1, "replicas": 1, "partition": 2}}]}, "'partition'"),
        ({"topics": [{"name": "t", "spec": {"replicas": 1}}]}, "partitions"),
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"cluster": {"spec": {"listeners": {"internal": {"authentication": "plain"}}}}}, "authentication"),
        ({"cluster": {"spec": {"listeners": {"internal": {"tls": "yes"}}}}}, "/cluster/spec/listeners/internal/tls"),
        ({"cluster": {"spec": {"certificates": {"validityDays": 1}}}}, "/cluster/spec/certificates/validityDays"),
        ({"cluster": {"spec": {"certificates": {"issuer": {"kind": "Issuer"}}}}}, "name"),
    ],
    ids=[
        "top-level",
        "nested",
        "cluster-spec",
        "negative-replicas",
        "quantity",
        "topic-spec",
        "required",
        "enum",
        "auth-enum",
        "tls-bool",
        "cert-validity",
        "issuer-name",
    ],
)
def test_schema_rejects(
    helm: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path, values: dict[str, Any], error: str
) -> None:
    result = helm("template", "t", str(CHART), "--kube-version", KUBE_VERSION, "-f", _values_file(tmp_path, values),
                  check=False)  # fmt: skip
    assert result.returncode != 0, f"accepted {values}"
    assert error in result.stderr, result.stderr


def test_values_are_documented() -> None:
    """values.yaml is the documentation: each top-level key has a comment just above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-zA-Z]\w*:", line):
            assert lines[i - 1].startswith("#"), f"values.yaml: {line!r} has no comment above it"
