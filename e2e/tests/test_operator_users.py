"""User resources on a real cluster, in order (each step needs the ones before it):

helm install (the operator, watching this test's namespace) -> a 1-broker Cluster with ACLs on
(spec.authorization) and SCRAM on its internal listener, Topics orders and payroll -> Users writer
(Write on orders) and reader (Read on orders) come Ready, each with a Secret holding its password
and client.properties -> application pods (the Tidelog image's CLI, the Secret mounted) use them:
the writer's pod writes orders, the reader's pod reads them back and is refused payroll with
TOPIC_AUTHORIZATION_FAILED, a pod with a wrong password is refused -> deleting the reader removes
its Secret (owner reference) and its finalizer completes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_kube import Kube, wait_until  # type: ignore[import-not-found]
from operator_release import TAG, Steps, operator_release  # type: ignore[import-not-found]

IMAGE = f"tidelog/broker:{TAG}"
NAME = "access"
Step = Steps("operator users e2e", "E2E_TIMINGS_USERS")

CLUSTER = json.dumps({
    "apiVersion": "tidelog.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": NAME},
    "spec": {"replicas": 1, "version": TAG, "imagePullPolicy": "Never", "storage": {"size": "1Gi"},
             "listeners": {"internal": {"authentication": "scram-sha-512"}},
             "authorization": {"type": "simple"},
             "config": {"default.replication.factor": 1, "offsets.topic.replication.factor": 1}},
})  # fmt: skip


def topic(name: str) -> str:
    return json.dumps({"apiVersion": "tidelog.dev/v1alpha1", "kind": "Topic", "metadata": {"name": name},
                       "spec": {"clusterRef": {"name": NAME}, "partitions": 1, "replicas": 1}})  # fmt: skip


def user(name: str, operations: list[str]) -> str:
    acls = [{"resource": {"type": "topic", "name": "orders"}, "operations": operations}]
    return json.dumps({"apiVersion": "tidelog.dev/v1alpha1", "kind": "User", "metadata": {"name": name},
                       "spec": {"clusterRef": {"name": NAME}, "authentication": {"type": "scram-sha-512"},
                                "authorization": {"type": "simple", "acls": acls}}})  # fmt: skip


@pytest.fixture(scope="module")
def operator(kube: Kube) -> Iterator[Kube]:
    with operator_release(
        kube,
        f"users-{kube.namespace}",
        Step,
        [["user", "--all"], ["topic", "--all"], ["cluster", NAME], ["pod", "-l", "tidelog.dev/e2e-app"]],
    ) as k:
        yield k


def ready(kube: Kube, kind: str, name: str) -> bool:
    conditions = (kube.get(kind, name).get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def cluster_ready(kube: Kube) -> bool:
    s = kube.get("cluster", NAME).get("status") or {}
    return ready(kube, "cluster", NAME) and s.get("readyReplicas") == 1 and not s.get("roll")


def app(kube: Kube, name: str, secret: str, script: str) -> tuple[str, str]:
    """Run ``script`` in a pod of the Tidelog image with the User's Secret mounted at /etc/kafka-user;
    (its final phase, its log)."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"tidelog.dev/e2e-app": "true"}},
        "spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "securityContext": {"runAsNonRoot": True},
            "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", script],
                            "volumeMounts": [{"name": "user", "mountPath": "/etc/kafka-user", "readOnly": True}]}],
            "volumes": [{"name": "user", "secret": {"secretName": secret}}],
        },
    }  # fmt: skip
    kube.apply(json.dumps(pod))
    phase = ""

    def finished() -> bool:
        nonlocal phase
        phase = str((kube.get("pod", name).get("status") or {}).get("phase", ""))
        return phase in ("Succeeded", "Failed")

    wait_until(f"pod {name} finished", finished, timeout=120, interval=1)
    return phase, kube.out("logs", name)


CONFIG = "/etc/kafka-user/client.properties"


def test_users_get_secrets_and_exactly_their_rights(operator: Kube) -> None:
    kube = operator
    with Step("Cluster with ACLs + SCRAM Ready, Topics Ready"):
        kube.apply(CLUSTER)
        kube.apply(topic("orders"))
        kube.apply(topic("payroll"))
        wait_until("Cluster access Ready", lambda: cluster_ready(kube), timeout=240, interval=1)
        wait_until("Topics Ready", lambda: ready(kube, "topic", "orders") and ready(kube, "topic", "payroll"),
                   timeout=120, interval=1)  # fmt: skip
    with Step("Users writer and reader Ready with Secrets"):
        kube.apply(user("writer", ["Write", "Describe"]))
        kube.apply(user("reader", ["Read", "Describe"]))
        wait_until("Users Ready", lambda: ready(kube, "user", "writer") and ready(kube, "user", "reader"),
                   timeout=120, interval=1)  # fmt: skip
        secret: dict[str, Any] = kube.get("secret", "reader")
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data["username"] == "reader"
        assert len(data["password"]) >= 24
        assert "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n" in data["client.properties"]
        assert secret["metadata"]["ownerReferences"][0]["kind"] == "User"
        assert kube.get("user", "reader")["status"]["principal"] == "User:reader"
    with Step("application pods: write, read, refused"):
        write = f"printf 'one\\ntwo\\nthree\\n' | tidelog produce orders --command-config {CONFIG}"
        phase, log = app(kube, "writer-app", "writer", write)
        assert phase == "Succeeded", log
        phase, log = app(kube, "reader-app", "reader",
                         f"tidelog consume orders --from-beginning --max-messages 3 --timeout-ms 30000 "
                         f"--command-config {CONFIG}")  # fmt: skip
        assert phase == "Succeeded", log
        assert [line for line in log.splitlines() if not line.startswith("consumed")] == ["one", "two", "three"]
        phase, log = app(kube, "reader-payroll", "reader",
                         f"tidelog consume payroll --from-beginning --max-messages 1 --timeout-ms 10000 "
                         f"--command-config {CONFIG}")  # fmt: skip
        assert phase == "Failed"
        assert "TOPIC_AUTHORIZATION_FAILED" in log, log
        phase, log = app(kube, "reader-writes", "reader",
                         f"echo no | tidelog produce orders --command-config {CONFIG}")  # fmt: skip
        assert phase == "Failed"
        assert "TOPIC_AUTHORIZATION_FAILED" in log, log
        phase, log = app(kube, "wrong-password", "reader",
                         f"sed 's/password=\"[^\"]*\"/password=\"guess\"/' {CONFIG} > /tmp/c.properties && "
                         "tidelog topics list --command-config /tmp/c.properties")  # fmt: skip
        assert phase == "Failed"
        assert "SASL_AUTHENTICATION_FAILED" in log, log
    with Step("User deleted: Secret gone, finalizer done"):
        kube.run("delete", "user", "reader", "--wait=true", "--timeout=60s", timeout=90)
        wait_until("Secret reader garbage-collected",
                   lambda: kube.run("get", "secret", "reader", check=False).returncode != 0, timeout=60)  # fmt: skip
