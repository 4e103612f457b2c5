"""The operator's User reconciliation against a real 3-broker cluster (authorizer on, SASL listener),
through the real gRPC admin API; only the Kubernetes API is an in-memory stand-in here (the
real-cluster run of the same flow is e2e/tests/test_operator_users.py).

A User gets a Secret with a generated password and the JAAS line; librdkafka authenticates with it,
reads the topic it was granted and is refused another; a binding added by hand is reverted on the
next pass; a password written into the Secret becomes the credential; deleting the User removes
its bindings and credentials."""

from __future__ import annotations

import asyncio
import base64
import copy
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from securedclients import SECURED, consume, first_error, produce_codes
from tidelogcluster import tidelog_cluster

from tidelog.broker.admin.client import AdminClient as ControlClient
from tidelog.operator import desired_tls, pki
from tidelog.operator.names import ClusterRef
from tidelog.operator.users import delete_user, reconcile_users

pytestmark = pytest.mark.timeout(300)
NOW = "2026-11-25T00:00:00Z"


class MemoryKube:
    """Objects by (kind, namespace, name); ``apply`` bumps resourceVersion when the object changed."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.version = 0

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        old = self.objects.get(key)
        stripped = copy.deepcopy(old) if old else None
        if stripped is not None:
            stripped["metadata"].pop("resourceVersion", None)
        if stripped != obj:
            self.version += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.objects[key] = obj
        return self.objects[key]

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    async def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        return [o for (k, ns, _), o in self.objects.items() if k == kind and ns == namespace]

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        return self.objects.pop((kind, namespace, name), None) is not None

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.objects[(kind, namespace, name)]["status"] = status


def _secret(kube: MemoryKube, name: str) -> dict[str, str]:
    data = kube.objects[("Secret", "apps", name)]["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _client(secret: dict[str, str], port: int) -> dict[str, Any]:
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": secret["sasl.mechanism"], "sasl.username": secret["username"],
            "sasl.password": secret["password"]}  # fmt: skip


def test_a_user_resource_becomes_credentials_and_exact_acls(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path, 3, *SECURED, sasl=True) as cluster:
        admin = AdminClient({"bootstrap.servers": cluster.brokers[1].bootstrap})
        for future in admin.create_topics([NewTopic(t, 1, 3) for t in ("orders", "payroll")]).values():
            future.result(20)
        produce_codes({"bootstrap.servers": cluster.brokers[1].bootstrap}, "orders", 2)
        kube = MemoryKube()
        kube.objects[("Cluster", "apps", "demo")] = {
            "metadata": {"name": "demo", "namespace": "apps"},
            "status": {"bootstrapAddress": "demo-kafka.apps.svc:9092"},
        }
        kube.objects[("User", "apps", "reader")] = {
            "apiVersion": "tidelog.dev/v1alpha1", "kind": "User",
            "metadata": {"name": "reader", "namespace": "apps", "uid": "u-1", "generation": 1},
            "spec": {
                "clusterRef": {"name": "demo"},
                "authentication": {"type": "scram-sha-512"},
                "authorization": {"type": "simple", "acls": [
                    {"resource": {"type": "topic", "name": "orders"}, "operations": ["Read", "Describe"]},
                    {"resource": {"type": "group", "name": "reader-", "patternType": "prefix"},
                     "operations": ["Read"]},
                ]},
            },
        }  # fmt: skip
        cluster_obj = kube.objects[("Cluster", "apps", "demo")]

        async def reconcile() -> int:
            async with ControlClient(cluster.admin_target(1), timeout=10) as control:
                return await reconcile_users(kube, control, cluster_obj, NOW)

        assert asyncio.run(reconcile()) == 0
        user = kube.objects[("User", "apps", "reader")]
        assert user["status"]["conditions"][0]["status"] == "True", user["status"]
        assert user["status"]["acls"] == 3
        secret = _secret(kube, "reader")
        assert secret["username"] == "reader"
        assert secret["bootstrap.servers"] == "demo-kafka.apps.svc:9092"
        assert f'username="reader" password="{secret["password"]}";' in secret["sasl.jaas.config"]
        owner = kube.objects[("Secret", "apps", "reader")]["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == ("User", "u-1")

        reader = _client(secret, cluster.sasl_ports[2])
        deadline = time.monotonic() + 20
        while (got := consume(reader, "orders", "reader-app", 2))[0] == [] and time.monotonic() < deadline:
            time.sleep(0.3)  # every broker sees the bindings within a watch round trip
        assert sorted(got[0]) == [b"v0", b"v1"]
        assert consume(reader, "payroll", "reader-app", 1)[1][0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert produce_codes(reader, "orders", 1) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

        # Drift: WRITE granted by hand is taken away by the next pass.
        extra = AclBinding(ResourceType.TOPIC, "orders", ResourcePatternType.LITERAL, "User:reader", "*",
                           AclOperation.WRITE, AclPermissionType.ALLOW)  # fmt: skip
        admin.create_acls([extra])[extra].result(10)
        assert asyncio.run(reconcile()) == 0
        deadline = time.monotonic() + 20
        while produce_codes(reader, "orders", 1) == [None]:
            assert time.monotonic() < deadline, "the hand-made WRITE binding was not reverted"
        assert produce_codes(reader, "orders", 1) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

        # A password written into the Secret becomes the user's credential.
        stored = kube.objects[("Secret", "apps", "reader")]
        stored["data"]["password"] = base64.b64encode(b"chosen-by-a-person").decode()
        stored["metadata"]["resourceVersion"] = "999"
        assert asyncio.run(reconcile()) == 0
        chosen = "chosen-by-a-person"
        assert _secret(kube, "reader")["password"] == chosen
        assert chosen in _secret(kube, "reader")["sasl.jaas.config"]
        changed = _client(_secret(kube, "reader"), cluster.sasl_ports[1])
        assert sorted(consume(changed, "orders", "reader-2", 2)[0]) == [b"v0", b"v1"]

        async def remove() -> str:
            async with ControlClient(cluster.admin_target(3), timeout=10) as control:
                return await delete_user(control, user)

        assert asyncio.run(remove()) == "user reader: 3 ACL binding(s) removed, credentials deleted"
        assert first_error(changed) == KafkaError._AUTHENTICATION


def test_a_tls_user_gets_a_client_certificate_from_the_cluster_ca(tmp_path: Path) -> None:
    """authentication: tls: the operator signs a client certificate with the cluster CA (the Secret
    desired_tls writes), the broker (trusting that CA, client certificates required) sees the
    certificate's subject as the principal the User's ACLs name."""
    now = datetime.now(UTC)
    ref = ClusterRef("demo", "apps", "c-1")
    ca = desired_tls.CaState(pki.new_ca("demo-cluster-ca v1", now, 400), 1)
    broker_pair = pki.issue(ca.current, "demo-broker", ["127.0.0.1", "localhost"], now, 30)
    keystore, truststore = tmp_path / "broker.pem", tmp_path / "ca.pem"
    keystore.write_text(broker_pair.key_pem + broker_pair.cert_pem)
    truststore.write_text(ca.current.cert_pem)
    with tidelog_cluster(tmp_path / "cluster", 1, *SECURED, "--set", f"ssl.keystore.location={keystore}",
                         "--set", f"ssl.truststore.location={truststore}", mtls=True) as cluster:  # fmt: skip
        admin = AdminClient({"bootstrap.servers": cluster.brokers[1].bootstrap})
        for future in admin.create_topics([NewTopic(t, 1, 1) for t in ("orders", "payroll")]).values():
            future.result(20)
        produce_codes({"bootstrap.servers": cluster.brokers[1].bootstrap}, "orders", 2)
        kube = MemoryKube()
        kube.objects[("Secret", "apps", "demo-cluster-ca")] = desired_tls.ca_secret(ref, ca)
        cluster_obj = {"metadata": {"name": "demo", "namespace": "apps"}, "status": {}}
        kube.objects[("User", "apps", "robot")] = {
            "apiVersion": "tidelog.dev/v1alpha1", "kind": "User",
            "metadata": {"name": "robot", "namespace": "apps", "uid": "u-2", "generation": 1},
            "spec": {"clusterRef": {"name": "demo"}, "authentication": {"type": "tls"},
                     "authorization": {"acls": [{"resource": {"type": "topic", "name": "orders"},
                                                 "operations": ["Read", "Describe"]},
                                                {"resource": {"type": "group", "name": "robots"},
                                                 "operations": ["Read"]}]}},
        }  # fmt: skip

        async def reconcile() -> int:
            async with ControlClient(cluster.admin_target(1), timeout=10) as control:
                return await reconcile_users(kube, control, cluster_obj, NOW)

        assert asyncio.run(reconcile()) == 0
        status = kube.objects[("User", "apps", "robot")]["status"]
        assert status["principal"] == "User:CN=robot,O=tidelog.dev", status
        assert status["conditions"][0]["status"] == "True", status
        secret = _secret(kube, "robot")
        assert pki.verify_signed_by(secret["user.crt"], ca.current.cert_pem)
        assert secret["user.pem"] == secret["user.key"] + secret["user.crt"]
        first = secret["user.crt"]
        assert asyncio.run(reconcile()) == 0
        assert _secret(kube, "robot")["user.crt"] == first  # kept while it is far from its end
        (tmp_path / "robot.pem").write_text(secret["user.pem"])
        robot = {"bootstrap.servers": f"127.0.0.1:{cluster.mtls_ports[1]}", "security.protocol": "SSL",
                 "ssl.ca.location": str(truststore), "ssl.certificate.location": str(tmp_path / "robot.pem"),
                 "ssl.key.location": str(tmp_path / "robot.pem")}  # fmt: skip
        deadline = time.monotonic() + 20
        while (got := consume(robot, "orders", "robots", 2))[0] == [] and time.monotonic() < deadline:
            time.sleep(0.3)
        assert sorted(got[0]) == [b"v0", b"v1"]
        assert consume(robot, "payroll", "robots", 1)[1][0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
