"""The Tidelog broker image in a real pod: Kafka clients produce and consume through it.

The image is the one `make images` (e2e/images/build.sh) builds and `up` / `load-images` imports:
`tidelog/broker:<version>-e2e` (E2E_TIDELOG_IMAGE overrides), with imagePullPolicy: Never. A missing
image fails the test at once (ErrImageNeverPull), never skips it.

- The broker listens and advertises on its pod IP (downward API), data on an emptyDir, as the
  image's non-root user (runAsNonRoot, so the image's USER must be numeric and not 0).
- From the host (which reaches pod IPs): librdkafka (confluent-kafka) creates a topic, produces
  and consumes; the broker's /metrics is scraped and counts the records.
- From a second pod of the same image: the project's own `tidelog produce` / `tidelog consume`.
- The broker is PID 1 (no init in the image): SIGTERM to PID 1 stops it with exit code 0.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from e2e_kube import DEFAULT_TIMEOUT, Kube, wait_until  # type: ignore[import-not-found]

_REPO = Path(__file__).resolve().parents[2]
_VERSION = re.search(r'^version = "([^"]+)"', (_REPO / "pyproject.toml").read_text(), re.MULTILINE)
assert _VERSION, "no version in pyproject.toml"
IMAGE = os.environ.get("E2E_TIDELOG_IMAGE", f"tidelog/broker:{_VERSION.group(1)}-e2e")
KAFKA_PORT = 9092
METRICS_PORT = 9404
# Waiting reasons that never resolve by themselves: fail at once with the reason, not at the deadline.
# The namespace is shared by the whole session: names distinct from the smoke tests' pods.
BROKER, CLIENT = "tidelog-broker", "tidelog-client"
_FATAL_WAITING = {"ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError",
                  "CreateContainerError", "CrashLoopBackOff", "InvalidImageName", "RunContainerError"}  # fmt: skip


def _broker_pod(name: str) -> str:
    args = [
        "broker",
        "--data-dir=/data",
        f"--listen=$(POD_IP):{KAFKA_PORT}",
        f"--advertise=$(POD_IP):{KAFKA_PORT}",
        f"--metrics-port={METRICS_PORT}",
        "--set=metrics.host=$(POD_IP)",
    ]
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 30
  securityContext: {{runAsNonRoot: true}}
  containers:
  - name: broker
    image: {IMAGE}
    imagePullPolicy: Never
    args: {json.dumps(args)}
    env:
    - name: POD_IP
      valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
    ports:
    - {{name: kafka, containerPort: {KAFKA_PORT}}}
    - {{name: metrics, containerPort: {METRICS_PORT}}}
    readinessProbe:
      tcpSocket: {{port: kafka}}
      periodSeconds: 1
    volumeMounts:
    - {{name: data, mountPath: /data}}
  volumes:
  - name: data
    emptyDir: {{}}
"""


def _client_pod(name: str) -> str:
    # Same image, another entry point: the project's CLI as the in-cluster client.
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{runAsNonRoot: true}}
  containers:
  - name: client
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"""


def _pod_state(kube: Kube, name: str) -> dict[str, Any]:
    """The pod as JSON; fails the test at once on a waiting reason that cannot recover."""
    pod: dict[str, Any] = kube.get("pod", name)
    for cs in pod.get("status", {}).get("containerStatuses", []):
        waiting = cs.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in _FATAL_WAITING:
            pytest.fail(
                f"pod {name}: {waiting['reason']}: {waiting.get('message', '')} (image {IMAGE}: `make images`?)"
            )
    if pod.get("status", {}).get("phase") == "Failed":
        pytest.fail(f"pod {name} failed: {json.dumps(pod['status'].get('containerStatuses'))}")
    return pod


def _ready(kube: Kube, name: str) -> str:
    """Wait until the pod is Ready; return its IP."""

    def ready() -> str:
        pod = _pod_state(kube, name)
        conds = pod.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
            return str(pod["status"]["podIP"])
        return ""

    ip: str = wait_until(f"pod {name} Ready", ready)
    return ip


def _scrape(ip: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:{METRICS_PORT}/metrics", timeout=5) as resp:
        assert resp.status == 200
        body: str = resp.read().decode()
        return body


def _metric(body: str, name: str, labels: str) -> float:
    for line in body.splitlines():
        if line.startswith(f"{name}{{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_broker_image_serves_kafka_clients_and_metrics(kube: Kube) -> None:
    kube.apply(_broker_pod(BROKER))
    kube.apply(_client_pod(CLIENT))
    ip = _ready(kube, BROKER)
    bootstrap = f"{ip}:{KAFKA_PORT}"

    # The image's user, numeric and non-root; the broker is PID 1.
    assert kube.exec(BROKER, "id", "-u").stdout.strip() == "10001"
    cmdline = kube.exec(BROKER, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert "broker" in cmdline, cmdline
    assert any(part.endswith("tidelog") for part in cmdline), cmdline

    # Host -> pod IP, librdkafka: create, produce, consume.
    topic, n = "e2e-image", 200
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        future.result(30)
    delivered: list[Any] = []
    errors: list[Any] = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(n):
        producer.produce(
            topic,
            key=b"k%d" % (i % 7),
            value=b"v-%d" % i,
            on_delivery=lambda err, msg: (errors if err else delivered).append(err or msg),
        )
    assert producer.flush(DEFAULT_TIMEOUT) == 0
    assert errors == []
    assert len(delivered) == n

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(2)])
    got: list[bytes] = []
    deadline = time.monotonic() + DEFAULT_TIMEOUT
    while len(got) < n and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        got.append(msg.value() or b"")
    consumer.close()
    del producer, admin  # destroyed now: no reconnect noise once the broker stops below
    assert sorted(got) == sorted(b"v-%d" % i for i in range(n))

    # /metrics on the pod IP counts what was appended.
    wait_until(
        f"/metrics on {ip}:{METRICS_PORT} counts {n} records of {topic}",
        lambda: _metric(_scrape(ip), "tidelog_records_in_total", f'topic="{topic}"') >= n,
    )

    # Pod -> pod: the project's CLI from a second pod of the same image.
    wait_until(f"pod {CLIENT} Running", lambda: _pod_state(kube, CLIENT).get("status", {}).get("phase") == "Running")
    kube.run(
        "exec", CLIENT, "--", "tidelog", "topics", "create", "--bootstrap", bootstrap, "--partitions", "1", "e2e-cli",
        timeout=DEFAULT_TIMEOUT,
    )  # fmt: skip
    lines = [f"from-pod-{i}" for i in range(10)]
    kube.run(
        "exec", "-i", CLIENT, "--", "tidelog", "produce", "--bootstrap", bootstrap, "--acks", "-1", "e2e-cli",
        input="\n".join(lines) + "\n",
        timeout=DEFAULT_TIMEOUT,
    )  # fmt: skip
    out = kube.run(
        "exec", CLIENT, "--", "tidelog", "consume", "--bootstrap", bootstrap, "--from-beginning",
        "--max-messages", str(len(lines)), "--timeout-ms", "20000", "e2e-cli",
        timeout=DEFAULT_TIMEOUT,
    ).stdout  # fmt: skip
    assert sorted(out.split()) == sorted(lines), out

    # SIGTERM to PID 1 (what the kubelet sends on delete): a clean exit, code 0, well within the
    # grace period. The image has no init process; the broker handles the signal itself.
    t0 = time.monotonic()
    kube.exec(BROKER, "python3", "-c", "import os, signal; os.kill(1, signal.SIGTERM)")

    def terminated() -> dict[str, Any]:
        pod: dict[str, Any] = kube.get("pod", BROKER)
        for cs in pod.get("status", {}).get("containerStatuses", []):
            if "terminated" in cs.get("state", {}):
                return dict(cs["state"]["terminated"])
        return {}

    state = wait_until("broker container terminated after SIGTERM", terminated, timeout=20)
    elapsed = time.monotonic() - t0
    assert state["exitCode"] == 0, state
    wait_until(f"pod {BROKER} Succeeded", lambda: kube.pod_phase(BROKER) == "Succeeded", timeout=20)
    print(f"broker stopped on SIGTERM in {elapsed:.1f}s (exit 0)")
