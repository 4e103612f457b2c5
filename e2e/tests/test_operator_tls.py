"""TLS listeners run by the operator on a real cluster, in order (each step needs the ones before it):

helm install (the operator, watching this test's namespace) -> a 3-broker Cluster whose internal
listener has tls: true -> Ready, with the cluster CA, the broker certificates (right names, signed
by the CA) and the public CA certificate in Secrets owned by the Cluster -> librdkafka with
security.protocol=SSL, trusting only ca.crt of <cluster>-cluster-ca-cert, produces and consumes
through the bootstrap Service -> a client trusting another CA, and a PLAINTEXT client, are refused
-> tidelog.dev/renew-certificates reissues every broker certificate and rolls the brokers one at a
time (never two down, no partition under min ISR) while a producer keeps producing: every acked
record readable, nothing failed.

Clients run on the host with the cluster's DNS (kafka_cluster_client.py in a private mount
namespace, as in test_operator.py); KAFKA_CLIENT_CONFIG carries the TLS settings. Step timings are
printed at the end (and written to $E2E_TIMINGS_TLS if set).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e_kube import Kube, wait_until  # type: ignore[import-not-found]
from operator_release import TAG, Steps, operator_release  # type: ignore[import-not-found]

from tidelog.broker.admin.client import AdminAuthenticationError, AdminClient
from tidelog.operator import pki

CLIENT = Path(__file__).resolve().parent / "kafka_cluster_client.py"
DNS = os.environ.get("E2E_CLUSTER_DNS", "169.254.20.10")
NAME = "secure"
Step = Steps("operator TLS e2e", "E2E_TIMINGS_TLS")

CLUSTER = json.dumps({
    "apiVersion": "tidelog.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": NAME},
    "spec": {"replicas": 3, "version": TAG, "imagePullPolicy": "Never", "storage": {"size": "1Gi"},
             "listeners": {"internal": {"tls": True}},
             "config": {"default.replication.factor": 3, "offsets.topic.replication.factor": 3}},
})  # fmt: skip
TOPIC = json.dumps({
    "apiVersion": "tidelog.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "payments"},
    "spec": {"clusterRef": {"name": NAME}, "partitions": 3, "replicas": 3, "config": {"min.insync.replicas": "2"}},
})  # fmt: skip


@pytest.fixture(scope="module")
def operator(kube: Kube) -> Iterator[Kube]:
    with operator_release(kube, f"tls-{kube.namespace}", Step, [["topic", "--all"], ["cluster", NAME]]) as k:
        yield k


def _dns_wrapped(kube: Kube, argv: list[str]) -> list[str]:
    resolv = Path(f"/tmp/tidelog-e2e-resolv-{kube.namespace}.conf")  # noqa: S108
    resolv.write_text(f"nameserver {DNS}\nsearch cluster.local\noptions ndots:5\n")
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(resolv), *argv]


def _env(config: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, "KAFKA_CLIENT_CONFIG": json.dumps(config)}


def client(kube: Kube, config: dict[str, Any], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """kafka_cluster_client.py with the cluster's DNS and ``config`` (librdkafka settings)."""
    proc = subprocess.run(_dns_wrapped(kube, [sys.executable, str(CLIENT), *args]), capture_output=True, text=True,
                          timeout=240, check=False, env=_env(config))  # fmt: skip
    if check:
        assert proc.returncode == 0, f"client {args[:2]} failed: {proc.stderr[-2000:]}"
    return proc


def bootstrap(kube: Kube) -> str:
    return f"{NAME}.{kube.namespace}.svc:9092"


def status(kube: Kube) -> dict[str, Any]:
    result: dict[str, Any] = kube.get("cluster", NAME).get("status") or {}
    return result


def ready(kube: Kube) -> bool:
    s = status(kube)
    cond: dict[str, Any] = next((c for c in s.get("conditions", []) if c["type"] == "Ready"), {})
    return cond.get("status") == "True" and s.get("readyReplicas") == 3 and not s.get("roll")


def topic_ready(kube: Kube) -> bool:
    conditions = (kube.get("topic", "payments").get("status") or {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def secret(kube: Kube, name: str) -> dict[str, Any]:
    result: dict[str, Any] = kube.get("secret", name)
    return result


def secret_text(kube: Kube, name: str, key: str) -> str:
    return base64.b64decode(secret(kube, name)["data"][key]).decode()


def pod_ready(kube: Kube, broker: int) -> bool:
    got = kube.out("get", "pod", f"{NAME}-{broker}", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')
    return bool(got == "True")


def smallest_isr(kube: Kube) -> int | None:
    """The smallest ISR of the topic's partitions (admin API on a pod IP), None if none answered."""

    token = secret_text(kube, f"{NAME}-admin-token", "token")  # a secured cluster's admin API wants it

    async def go() -> int | None:
        for b in range(3):
            ip = kube.out("get", "pod", f"{NAME}-{b}", "-o", "jsonpath={.status.podIP}")
            if not ip:
                continue
            with contextlib.suppress(Exception):
                async with AdminClient(f"{ip}:9093", timeout=3, token=token) as admin:
                    return min(len(p.isr) for p in (await admin.describe_topic("payments")).partitions)
        return None

    return asyncio.run(go())


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls") / "ca.crt"


def ssl(ca: Path) -> dict[str, Any]:
    return {"security.protocol": "SSL", "ssl.ca.location": str(ca)}


ACKED: list[str] = []


def test_a_tls_cluster_comes_ready_with_its_ca_and_certificates(operator: Kube, ca_file: Path) -> None:
    kube = operator
    with Step("TLS Cluster applied -> Ready (CA, certificates, 3 brokers)"):
        kube.apply(CLUSTER)
        wait_until("Cluster secure Ready with 3 brokers", lambda: ready(kube), timeout=240, interval=1)
        kube.apply(TOPIC)
        wait_until("Topic payments Ready", lambda: topic_ready(kube), timeout=60)
    uid = kube.get("cluster", NAME)["metadata"]["uid"]
    for name in (f"{NAME}-cluster-ca", f"{NAME}-cluster-ca-cert", f"{NAME}-broker-certs", f"{NAME}-admin-token"):
        owners = secret(kube, name)["metadata"]["ownerReferences"]
        assert [(o["kind"], o["uid"]) for o in owners] == [("Cluster", uid)]  # deleted with the Cluster
    # The control plane of a secured cluster takes no anonymous calls (the operator used the token).
    token = secret_text(kube, f"{NAME}-admin-token", "token")
    broker_ip = kube.out("get", "pod", f"{NAME}-0", "-o", "jsonpath={.status.podIP}")

    async def admin_calls() -> int:
        async with AdminClient(f"{broker_ip}:9093", timeout=10) as anonymous:
            with pytest.raises(AdminAuthenticationError):
                await anonymous.describe_cluster()
        async with AdminClient(f"{broker_ip}:9093", timeout=10, token=token) as admin:
            return len((await admin.describe_cluster()).brokers)

    assert asyncio.run(admin_calls()) == 3
    assert sorted(secret(kube, f"{NAME}-cluster-ca-cert")["data"]) == ["ca.crt"]  # no key for clients
    ca = secret_text(kube, f"{NAME}-cluster-ca-cert", "ca.crt")
    assert ca == secret_text(kube, f"{NAME}-cluster-ca", "ca.crt")
    ca_file.write_text(ca)
    broker_secret = secret(kube, f"{NAME}-broker-certs")
    assert sorted(broker_secret["data"]) == ["ca.crt", f"{NAME}-0.pem", f"{NAME}-1.pem", f"{NAME}-2.pem"]
    for b in range(3):
        pem = secret_text(kube, f"{NAME}-broker-certs", f"{NAME}-{b}.pem")
        cert = pem[pem.index("-----BEGIN CERTIFICATE-----") :]
        assert pki.verify_signed_by(cert, ca)
        sans = pki.info(cert).sans
        assert f"{NAME}-{b}.{NAME}-brokers.{kube.namespace}.svc" in sans
        assert f"{NAME}.{kube.namespace}.svc" in sans
    certs = status(kube)["certificates"]
    assert (certs["issuer"], certs["caGeneration"], certs["certGeneration"]) == ("ClusterCA", 1, 1)
    not_after = datetime.fromisoformat(certs["notAfter"])
    assert not_after > datetime.now(UTC)
    # the operator's metric, for an expiry alert: scraped from its pod (pod IPs route from the node)
    ip = kube.out("get", "pod", "-l", f"app.kubernetes.io/instance=tls-{kube.namespace}", "-o",
                  "jsonpath={.items[0].status.podIP}")  # fmt: skip
    with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=10) as resp:
        page = resp.read().decode()
    series = f'tidelog_operator_certificate_expiration_timestamp_seconds{{certificate="brokers",name="{NAME}"'
    line = next(ln for ln in page.splitlines() if ln.startswith(series))
    assert abs(float(line.split()[-1]) - not_after.timestamp()) < 1


def test_an_ssl_client_trusting_the_cluster_ca_produces_and_consumes(operator: Kube, ca_file: Path) -> None:
    kube = operator
    with Step("librdkafka over SSL: produce 200 (acks=all) + consume all"):
        acked = json.loads(client(kube, ssl(ca_file), "produce", bootstrap(kube), "payments", "tls", "200").stdout)
        read = json.loads(client(kube, ssl(ca_file), "consume", bootstrap(kube), "payments", "200").stdout)
    assert len(acked) == 200
    assert set(acked) <= set(read)
    ACKED.extend(acked)


def test_clients_trusting_another_ca_or_speaking_plaintext_are_refused(operator: Kube, ca_file: Path) -> None:
    kube = operator
    other = ca_file.parent / "other-ca.crt"
    other.write_text(pki.new_ca("not the cluster CA", datetime.now(UTC), 1).cert_pem)
    with Step("a client trusting another CA, and a PLAINTEXT client: refused"):
        wrong = client(kube, ssl(other), "metadata", bootstrap(kube), check=False)
        plain = client(kube, {}, "metadata", bootstrap(kube), check=False)
        right = client(kube, ssl(ca_file), "metadata", bootstrap(kube))
    assert wrong.returncode == 1, wrong.stdout
    assert "refused" in wrong.stderr
    assert plain.returncode == 1, plain.stdout
    assert len(json.loads(right.stdout)) == 3  # the three brokers, advertised by their pod names


def test_a_bad_listener_combination_is_refused_by_the_api_server(operator: Kube) -> None:
    bad = json.loads(CLUSTER)
    bad["metadata"]["name"] = "bad-auth"
    bad["spec"]["listeners"] = {"internal": {"tls": False, "authentication": "tls"}}
    proc = operator.run("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert proc.returncode != 0
    assert "authentication: tls needs tls: true" in proc.stderr


def test_renewal_reissues_certificates_and_rolls_one_broker_at_a_time_while_producing(
    operator: Kube, ca_file: Path, tmp_path: Path
) -> None:
    kube = operator
    before = {b: pki.fingerprint(secret_text(kube, f"{NAME}-broker-certs", f"{NAME}-{b}.pem").split(
        "-----END PRIVATE KEY-----")[1]) for b in range(3)}  # fmt: skip
    uids = {b: kube.out("get", "pod", f"{NAME}-{b}", "-o", "jsonpath={.metadata.uid}") for b in range(3)}
    stop = tmp_path / "stop"
    argv = _dns_wrapped(kube, [sys.executable, str(CLIENT), "produce-until", bootstrap(kube), "payments", "roll",
                               str(stop)])  # fmt: skip
    producer = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(ssl(ca_file)))
    most_down, lowest_isr = 0, []
    try:
        time.sleep(2)  # the producer is connected and producing before the roll starts
        with Step("renew-certificates -> reissued, 3 brokers rolled one at a time (producing)"):
            kube.run("annotate", "cluster", NAME, f"tidelog.dev/renew-certificates={int(time.time())}", "--overwrite")
            wait_until("certificate generation 2", lambda: (status(kube).get("certificates") or {}).get(
                "certGeneration") == 2, timeout=60)  # fmt: skip

            def rolled() -> bool:
                nonlocal most_down
                most_down = max(most_down, sum(not pod_ready(kube, b) for b in range(3)))
                isr = smallest_isr(kube)
                if isr is not None:
                    lowest_isr.append(isr)
                now = {b: kube.out("get", "pod", f"{NAME}-{b}", "-o", "jsonpath={.metadata.uid}") for b in range(3)}
                return all(now[b] and now[b] != uids[b] for b in range(3)) and ready(kube)

            wait_until("every broker restarted with its new certificate", rolled, timeout=600, interval=1)
    finally:
        stop.touch()
        out, err = producer.communicate(timeout=200)
    result = json.loads(out) if out.strip() else {}
    assert result, f"the producer printed nothing: {err[-2000:]}"
    after = {b: pki.fingerprint(secret_text(kube, f"{NAME}-broker-certs", f"{NAME}-{b}.pem").split(
        "-----END PRIVATE KEY-----")[1]) for b in range(3)}  # fmt: skip
    assert all(after[b] != before[b] for b in range(3))
    assert secret_text(kube, f"{NAME}-cluster-ca-cert", "ca.crt") == ca_file.read_text()  # same CA: clients unchanged
    assert most_down <= 1, "two brokers were down at once"
    assert lowest_isr
    assert min(lowest_isr) >= 2, f"a partition went under min.insync.replicas=2: {lowest_isr}"
    assert result["failed"] == 0, result["errors"]
    assert len(result["acked"]) > 100, result["sent"]
    Step.timings["records produced during the roll"] = len(result["acked"])
    with Step("consume every acked record after the roll (SSL)"):
        total = len(ACKED) + len(result["acked"])
        read = json.loads(client(kube, ssl(ca_file), "consume", bootstrap(kube), "payments", str(total)).stdout)
    assert set(ACKED) | set(result["acked"]) <= set(read)
