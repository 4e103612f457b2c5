"""Smoke tests of an e2e cluster: node, pods, Service + DNS, StatefulSet storage and pod DNS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_kube import TEST_IMAGE, Kube, wait_until  # type: ignore[import-not-found]


def _pod(name: str, command: str, labels: str = "") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {labels or name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", {json.dumps(command)}]
"""


def test_node_ready(kube: Kube) -> None:
    def ready() -> bool:
        nodes = kube.get("nodes", namespaced=False)["items"]
        return bool(nodes) and all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"]) for n in nodes
        )

    wait_until("every node Ready", ready)


def test_pod_from_local_image_runs(kube: Kube) -> None:
    kube.apply(_pod("hello", "echo hello-from-e2e; exec sleep 3600"))
    wait_until("pod hello Running", lambda: kube.pod_phase("hello") == "Running")
    wait_until("pod hello logs", lambda: "hello-from-e2e" in kube.run("logs", "hello").stdout)
    assert kube.exec("hello", "cat", "/proc/1/cmdline").stdout.startswith("sleep")


def test_service_and_dns(kube: Kube) -> None:
    kube.apply(_pod("web", "mkdir -p /www && echo served-by-web > /www/index.html && exec httpd -f -p 8080 -h /www"))
    kube.apply("""
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
""")
    kube.apply(_pod("client", "exec sleep 3600"))
    wait_until(
        "pods web and client Running",
        lambda: kube.pod_phase("web") == "Running" and kube.pod_phase("client") == "Running",
    )
    wait_until(
        "service web has an endpoint",
        lambda: kube.out(
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[*]}",
        ),
    )
    fqdn = f"web.{kube.namespace}.svc.cluster.local"
    wait_until(
        f"{fqdn} resolves from a pod", lambda: kube.exec("client", "nslookup", fqdn, check=False).returncode == 0
    )
    # By short name (search path from the pod's resolv.conf) and through the ClusterIP. Not
    # `wget -T`: Debian's busybox-static 1.35 wget segfaults (exit 139) with it; `timeout` instead.
    body = wait_until(
        "http://web/ answers through the Service",
        lambda: kube.exec("client", "timeout", "5", "wget", "-q", "-O", "-", "http://web/", check=False).stdout,
    )
    assert "served-by-web" in body


def test_statefulset_keeps_data_and_dns(kube: Kube) -> None:
    kube.apply(
        """
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {app: db}
  ports: [{name: tcp, port: 9000}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {image}
        imagePullPolicy: Never
        command: ["sh", "-c", "[ -f /data/id ] || echo $RANDOM$RANDOM > /data/id; exec sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 16Mi}}
""".replace("{image}", TEST_IMAGE)
    )
    kube.apply(_pod("dnsclient", "exec sleep 3600"))
    wait_until("pod db-0 Running", lambda: kube.pod_phase("db-0") == "Running")
    pvc_phase = kube.run("get", "pvc", "data-db-0", "-o", "jsonpath={.status.phase}").stdout
    assert pvc_phase == "Bound"
    first = wait_until("db-0 wrote /data/id", lambda: kube.exec_out("db-0", "cat", "/data/id"))

    wait_until("pod dnsclient Running", lambda: kube.pod_phase("dnsclient") == "Running")
    fqdn = f"db-0.db.{kube.namespace}.svc.cluster.local"
    wait_until(f"{fqdn} resolves", lambda: kube.exec("dnsclient", "nslookup", fqdn, check=False).returncode == 0)

    old_uid = kube.get("pod", "db-0")["metadata"]["uid"]
    kube.run("delete", "pod", "db-0", "--wait=true", timeout=120)

    def recreated_and_running() -> bool:
        pod = kube.get("pod", "db-0")
        return bool(pod["metadata"]["uid"] != old_uid and pod["status"].get("phase") == "Running")

    wait_until("db-0 recreated and Running", recreated_and_running)
    again = wait_until("db-0 reads /data/id", lambda: kube.exec_out("db-0", "cat", "/data/id"))
    assert again == first, "the StatefulSet pod lost its volume's data across a delete"


def test_helm_chart_installs_and_uninstalls(kube: Kube) -> None:
    helm = os.environ.get("HELM") or shutil.which("helm")
    if not helm:
        pytest.fail("no helm (set HELM or put it on PATH)")
    chart = str(Path(__file__).resolve().parent / "charts" / "smoke")

    def helm_run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [helm, "--namespace", kube.namespace, *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, f"helm {' '.join(args)}: {proc.stderr.strip()}"
        return proc

    helm_run("install", "smoke", chart, "--wait", "--timeout", "60s", "--set", "message=from-e2e")
    data = kube.get("configmap", "smoke-smoke")["data"]
    assert data == {"message": "from-e2e"}
    assert "smoke" in helm_run("list", "--short").stdout.split()
    helm_run("uninstall", "smoke", "--wait", "--timeout", "60s")
    wait_until(
        "configmap smoke-smoke deleted",
        lambda: kube.run("get", "configmap", "smoke-smoke", check=False).returncode != 0,
    )
