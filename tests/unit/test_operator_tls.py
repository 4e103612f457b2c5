"""Listener security and certificates of the operator (operator/desired_tls.py, pki.py,
certificates.py), without a cluster: the listener protocols and broker arguments, the names each
broker certificate carries, that the cluster CA signs them and their validity, the Secrets, the
rotation decisions (expiry, renewal asked for, new brokers, changed names, the three CA renewal
phases, each a pod-template change that the restart-safe roll carries out), the cert-manager
Certificate, and the certificates step's I/O against an in-memory Kubernetes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidelog.broker.admin.model import BrokerDesc, ClusterDesc, RestartCheck
from tidelog.operator import certificates, desired, desired_certmanager, desired_tls, pki, schema
from tidelog.operator.desired import ExternalAddress
from tidelog.operator.models import ClusterSpec
from tidelog.operator.names import HASH_ANNOTATION, ClusterRef
from tidelog.operator.reconcile import Pass

REF = ClusterRef("demo", "prod", "0b5a9d1e-0000-4000-8000-000000000002")
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def spec(**fields: Any) -> ClusterSpec:
    return schema.load(ClusterSpec, fields)


TLS = {"listeners": {"internal": {"tls": True}}}


def container(s: ClusterSpec, certs: str | None = None) -> dict[str, Any]:
    sts = desired.desired_objects(REF, s, certificates=certs)[-1]
    return sts["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


def sets(c: dict[str, Any]) -> dict[str, str]:
    args = c["args"]
    pairs = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    return dict(p.split("=", 1) for p in pairs)


def wanted(brokers: int, ref: ClusterRef = REF) -> dict[int, frozenset[str]]:
    return {b: desired_tls.broker_sans(ref, b) for b in range(brokers)}


def pods_with(plan: desired_tls.PkiPlan, brokers: int) -> dict[int, desired_tls.PodCerts]:
    """Every broker restarted with the plan's annotation (the roll finished)."""
    value = plan.annotation
    return {b: desired_tls.PodCerts.of({"metadata": {"annotations": {desired_tls.CERTS_ANNOTATION: value}}})
            for b in range(brokers)}  # fmt: skip


# ----- listeners -----


@pytest.mark.parametrize(
    ("tls", "auth", "expected"),
    [
        (False, "none", "PLAINTEXT"),
        (True, "none", "SSL"),
        (True, "tls", "SSL"),
        (True, "scram-sha-512", "SASL_SSL"),
        (False, "scram-sha-512", "SASL_PLAINTEXT"),
    ],
)
def test_listener_protocols(tls: bool, auth: Any, expected: str) -> None:
    assert desired_tls.protocol(tls, auth) == expected


def test_the_default_cluster_is_plaintext_as_before() -> None:
    s = spec()
    assert not desired_tls.secured(s)
    c = container(s, certs="ca=x,certs=1")
    assert c["args"][c["args"].index("--listen") + 1] == "0.0.0.0:9092"
    assert "tls" not in {m["name"] for m in c["volumeMounts"]}
    sts = desired.desired_objects(REF, s, certificates="ca=x,certs=1")[-1]
    assert desired_tls.CERTS_ANNOTATION not in sts["spec"]["template"]["metadata"].get("annotations", {})
    # the same pod-template hash as without the certificates argument: no roll after an upgrade
    plain = desired.desired_objects(REF, s)[-1]
    assert sts["metadata"]["annotations"][HASH_ANNOTATION] == plain["metadata"]["annotations"][HASH_ANNOTATION]


def test_a_tls_internal_listener_adds_mutual_tls_replication_and_mounts_the_keys() -> None:
    c = container(spec(**TLS), certs="ca=abc,certs=1")
    args = c["args"]
    assert args[args.index("--listen") + 1] == "INTERNAL://0.0.0.0:9092,REPLICATION://0.0.0.0:9091"
    assert args[args.index("--advertise") + 1] == (
        "INTERNAL://$(POD_NAME).demo-brokers.$(POD_NAMESPACE).svc:9092,"
        "REPLICATION://$(POD_NAME).demo-brokers.$(POD_NAMESPACE).svc:9091"
    )
    assert sets(c) | {"metrics.host": "*"} == {
        "listener.security.protocol.map": "INTERNAL:SSL,REPLICATION:SSL",
        "inter.broker.listener.name": "REPLICATION",
        "ssl.keystore.location": "/etc/tidelog/tls/$(POD_NAME).pem",
        "ssl.truststore.location": "/etc/tidelog/tls/ca.crt",
        "listener.name.replication.ssl.client.auth": "required",
        "admin.token.file": "/etc/tidelog/admin/token",
        "metrics.host": "*",
    }
    assert {"name": "tls", "mountPath": "/etc/tidelog/tls", "readOnly": True} in c["volumeMounts"]
    assert {"name": "admin-token", "mountPath": "/etc/tidelog/admin", "readOnly": True} in c["volumeMounts"]
    assert {"name": "replication", "containerPort": 9091, "protocol": "TCP"} in c["ports"]
    sts = desired.desired_objects(REF, spec(**TLS), certificates="ca=abc,certs=1")[-1]
    template = sts["spec"]["template"]
    assert {"name": "tls", "secret": {"secretName": "demo-broker-certs", "defaultMode": 0o440}} in template["spec"][
        "volumes"
    ]
    assert template["metadata"]["annotations"][desired_tls.CERTS_ANNOTATION] == "ca=abc,certs=1"


def test_a_new_certificate_generation_changes_the_pod_template_hash() -> None:
    def digest(certs: str) -> str:
        sts = desired.desired_objects(REF, spec(**TLS), certificates=certs)[-1]
        return str(sts["metadata"]["annotations"][HASH_ANNOTATION])

    assert digest("ca=a,certs=1") != digest("ca=a,certs=2") != digest("ca=b,certs=2")


def test_client_authentication_per_listener() -> None:
    s = spec(listeners={"internal": {"tls": True, "authentication": "tls"},
                        "external": {"type": "NodePort", "tls": True, "authentication": "scram-sha-512"}})  # fmt: skip
    got = sets(container(s))
    assert got["listener.security.protocol.map"] == "INTERNAL:SSL,EXTERNAL:SASL_SSL,REPLICATION:SSL"
    assert got["listener.name.internal.ssl.client.auth"] == "required"
    assert got["listener.name.external.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert got["config.providers"] == "file"
    args = container(s)["args"]
    assert "EXTERNAL://0.0.0.0:9094" in args[args.index("--listen") + 1]


def test_scram_without_tls_still_replicates_over_mutual_tls() -> None:
    got = sets(container(spec(listeners={"internal": {"authentication": "scram-sha-512"}})))
    assert got["listener.security.protocol.map"] == "INTERNAL:SASL_PLAINTEXT,REPLICATION:SSL"
    assert got["inter.broker.listener.name"] == "REPLICATION"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"listeners": {"internal": {"authentication": "tls"}}}, "authentication: tls needs tls: true"),
        ({"listeners": {"external": {"type": "NodePort", "authentication": "tls"}}}, "listeners.external"),
        ({"certificates": {"validityDays": 30, "renewBeforeDays": 30}}, "renewBeforeDays 30 must be below"),
        ({"certificates": {"validityDays": 400, "caValidityDays": 365}}, "exceeds caValidityDays"),
    ],
)
def test_bad_combinations_are_refused_with_a_readable_message(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        desired.desired_objects(REF, spec(**fields))


def test_the_crd_rules_refuse_the_same_combinations() -> None:
    from tidelog.operator.crd import cluster_crd

    props = cluster_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    internal = props["listeners"]["properties"]["internal"]
    assert internal["properties"]["authentication"]["enum"] == ["none", "scram-sha-512", "tls"]
    assert internal["properties"]["authentication"]["default"] == "none"
    assert internal["properties"]["tls"]["default"] is False
    assert any("self.tls" in r["rule"] for r in internal["x-kubernetes-validations"])
    certs = props["certificates"]
    assert {r["message"] for r in certs["x-kubernetes-validations"]} == {
        "renewBeforeDays must be below validityDays",
        "validityDays may not exceed caValidityDays",
    }
    assert certs["properties"]["issuer"]["properties"]["kind"]["enum"] == ["Issuer", "ClusterIssuer"]


# ----- certificates -----


def test_broker_certificates_name_the_pod_and_the_services_and_chain_to_the_ca() -> None:
    plan = desired_tls.plan_pki(REF, spec(**TLS), None, None, wanted(3), {}, NOW)
    ca = pki.info(plan.ca.current.cert_pem)
    assert ca.is_ca
    assert ca.subject == "CN=demo-cluster-ca v1,O=tidelog.dev"
    assert ca.not_after - NOW == timedelta(days=1825)
    for b in range(3):
        kp = plan.certs.certs[b]
        got = pki.info(kp.cert_pem)
        assert pki.verify_signed_by(kp.cert_pem, plan.ca.current.cert_pem)
        assert not got.is_ca
        assert got.subject == "CN=demo-broker,O=tidelog.dev"  # the brokers' one principal
        assert got.not_after - NOW == timedelta(days=365)
        assert got.not_before < NOW
        assert {f"demo-{b}.demo-brokers.prod.svc", f"demo-{b}.demo-brokers.prod.svc.cluster.local",
                "demo", "demo.prod", "demo.prod.svc", "demo.prod.svc.cluster.local",
                "demo-brokers.prod.svc"} <= got.sans  # fmt: skip
        assert not any(name.startswith(f"demo-{o}.") for o in range(3) if o != b for name in got.sans)
    other = pki.new_ca("someone else", NOW, 10)
    assert not pki.verify_signed_by(plan.certs.certs[0].cert_pem, other.cert_pem)


def test_a_broker_certificate_never_outlives_its_ca() -> None:
    ca = pki.new_ca("short", NOW, 10)
    cert = pki.issue(ca, "x", ["a.example"], NOW, 365)
    assert pki.info(cert.cert_pem).not_after == pki.info(ca.cert_pem).not_after


def test_external_tls_names_load_balancers_nodes_and_alternative_names() -> None:
    lb = spec(listeners={"external": {"type": "LoadBalancer", "tls": True, "alternativeNames": ["kafka.example"]}})
    names = certificates.external_names(
        lb, {0: ExternalAddress(host="203.0.113.10"), 1: ExternalAddress(host="lb1.example")},
        ExternalAddress(host="boot.example"), {},
    )  # fmt: skip
    assert names[0] == ("203.0.113.10", "boot.example", "kafka.example")
    assert names[1] == ("boot.example", "kafka.example", "lb1.example")
    np = spec(listeners={"external": {"type": "NodePort", "tls": True}})
    pods = {0: {"status": {"hostIP": "10.0.0.1"}}, 1: {"status": {"hostIP": "10.0.0.2"}}}
    names = certificates.external_names(np, {0: ExternalAddress(node_port=31000)}, None, pods)
    assert names == {0: ("10.0.0.1", "10.0.0.2")}
    cert = pki.issue(pki.new_ca("ca", NOW, 30), "b", desired_tls.broker_sans(REF, 0, names[0]), NOW, 10)
    assert {"10.0.0.1", "10.0.0.2"} <= pki.info(cert.cert_pem).sans  # IP SANs
    plain = spec(listeners={"external": {"type": "NodePort"}})
    assert certificates.external_names(plain, {0: ExternalAddress(node_port=1)}, None, pods) == {}


def test_secrets_hold_pem_files_the_broker_reads_and_round_trip() -> None:
    plan = desired_tls.plan_pki(REF, spec(**TLS), None, None, wanted(2), {}, NOW)
    broker = desired_tls.broker_secret(REF, plan.certs, plan.ca.bundle)
    assert sorted(broker["data"]) == ["ca.crt", "demo-0.pem", "demo-1.pem"]
    pem = base64.b64decode(broker["data"]["demo-0.pem"]).decode()
    assert pem.index("PRIVATE KEY") < pem.index("BEGIN CERTIFICATE")  # key, then certificate
    public = desired_tls.ca_cert_secret(REF, plan.ca.bundle, 1)
    assert list(public["data"]) == ["ca.crt"]
    assert "PRIVATE" not in base64.b64decode(public["data"]["ca.crt"]).decode()
    for secret in (broker, public, desired_tls.ca_secret(REF, plan.ca)):
        assert secret["metadata"]["ownerReferences"] == [REF.owner_reference()]  # deleted with the Cluster
    assert desired_tls.read_ca(desired_tls.ca_secret(REF, plan.ca)) == plan.ca
    assert desired_tls.read_broker_certs(REF, broker) == plan.certs
    assert "PRIVATE" not in repr(plan.certs)
    assert "hidden" in repr(plan.certs.certs[0])


# ----- rotation -----


def settle(s: ClusterSpec, brokers: int = 3) -> desired_tls.PkiPlan:
    """A cluster whose certificates exist and whose pods all started with them."""
    return desired_tls.plan_pki(REF, s, None, None, wanted(brokers), {}, NOW)


def test_nothing_changes_while_nothing_is_due() -> None:
    s = spec(**TLS)
    first = settle(s)
    again = desired_tls.plan_pki(
        REF, s, first.ca, first.certs, wanted(3), pods_with(first, 3), NOW + timedelta(days=300)
    )
    assert again.ca == first.ca
    assert again.certs == first.certs
    assert again.annotation == first.annotation
    assert again.notes == []
    assert again.waiting is None


def test_expiring_broker_certificates_are_all_reissued_by_the_same_ca_in_one_roll() -> None:
    s = spec(**TLS)
    first = settle(s)
    later = NOW + timedelta(days=336)  # 29 days left of 365: inside renewBeforeDays 30
    plan = desired_tls.plan_pki(REF, s, first.ca, first.certs, wanted(3), pods_with(first, 3), later)
    assert plan.ca == first.ca
    assert plan.certs.generation == 2
    assert plan.annotation != first.annotation
    assert all(plan.certs.certs[b] != first.certs.certs[b] for b in range(3))
    assert all(pki.verify_signed_by(kp.cert_pem, first.ca.current.cert_pem) for kp in plan.certs.certs.values())
    assert "expiring" in plan.notes[0]


def test_renewal_asked_for_by_annotation() -> None:
    s = spec(**TLS)
    first = settle(s)
    plan = desired_tls.plan_pki(REF, s, first.ca, first.certs, wanted(3), pods_with(first, 3), NOW, renew_certs="now")
    assert plan.certs.generation == 2
    assert plan.certs.token == "now"  # noqa: S105 - a renewal request, not a secret
    again = desired_tls.plan_pki(REF, s, plan.ca, plan.certs, wanted(3), pods_with(plan, 3), NOW, renew_certs="now")
    assert again.certs == plan.certs  # acted on once


def test_a_scale_up_issues_the_new_brokers_certificates_without_a_roll() -> None:
    s = spec(**TLS)
    first = settle(s)
    plan = desired_tls.plan_pki(REF, s, first.ca, first.certs, wanted(5), pods_with(first, 3), NOW)
    assert sorted(plan.certs.certs) == [0, 1, 2, 3, 4]
    assert plan.annotation == first.annotation  # the running brokers do not restart
    assert all(plan.certs.certs[b] == first.certs.certs[b] for b in range(3))
    down = desired_tls.plan_pki(REF, s, plan.ca, plan.certs, wanted(3), pods_with(plan, 3), NOW)
    assert sorted(down.certs.certs) == [0, 1, 2]
    assert down.annotation == first.annotation


def test_a_missing_name_reissues_that_broker_and_rolls() -> None:
    s = spec(**TLS)
    first = settle(s)
    names = wanted(3) | {1: desired_tls.broker_sans(REF, 1, ("lb1.example",))}
    plan = desired_tls.plan_pki(REF, s, first.ca, first.certs, names, pods_with(first, 3), NOW)
    assert plan.certs.generation == 2
    assert "lb1.example" in pki.info(plan.certs.certs[1].cert_pem).sans
    assert plan.certs.certs[0] == first.certs.certs[0]


def test_ca_renewal_keeps_trust_through_two_rolls() -> None:
    """Phase A: new CA, trust both, certificates unchanged -> roll. B: every broker trusts the new
    CA -> certificates reissued by it -> roll. C: every broker shows them -> the old CA goes, no roll."""
    s = spec(**TLS)
    first = settle(s)
    old_ca = first.ca.current.cert_pem
    late = NOW + timedelta(days=1825 - 20)  # the CA has 20 days left
    a = desired_tls.plan_pki(REF, s, first.ca, first.certs, wanted(3), pods_with(first, 3), late)
    assert a.ca.generation == 2
    assert a.ca.old == first.ca.current
    assert pki.certificates(a.ca.bundle) == [a.ca.current.cert_pem, old_ca]  # clients and brokers trust both
    assert a.certs.certs == first.certs.certs  # still signed by the old CA, which everyone trusts
    assert a.annotation != first.annotation
    assert a.waiting is not None
    # mid-roll: broker 2 restarted (trusts both), 0 and 1 not yet: nothing more happens
    mid = pods_with(first, 3) | {2: pods_with(a, 3)[2]}
    still = desired_tls.plan_pki(REF, s, a.ca, a.certs, wanted(3), mid, late)
    assert still.certs == a.certs
    assert still.ca == a.ca
    assert "[0, 1]" in (still.waiting or "")
    # a broker added mid-roll gets a certificate the not-yet-restarted ones trust (the old CA's)
    grown = desired_tls.plan_pki(REF, s, a.ca, a.certs, wanted(4), mid, late)
    assert pki.verify_signed_by(grown.certs.certs[3].cert_pem, old_ca)
    b = desired_tls.plan_pki(REF, s, a.ca, a.certs, wanted(3), pods_with(a, 3), late)
    assert b.certs.ca_generation == 2
    assert b.certs.generation == 2
    assert b.annotation != a.annotation
    assert all(pki.verify_signed_by(kp.cert_pem, b.ca.current.cert_pem) for kp in b.certs.certs.values())
    assert b.ca.old is not None  # restarted brokers show new-CA certificates to peers trusting both
    mid_b = pods_with(a, 3) | {2: pods_with(b, 3)[2]}
    still_b = desired_tls.plan_pki(REF, s, b.ca, b.certs, wanted(3), mid_b, late)
    assert still_b.ca.old is not None
    assert "[0, 1]" in (still_b.waiting or "")
    c = desired_tls.plan_pki(REF, s, b.ca, b.certs, wanted(3), pods_with(b, 3), late)
    assert c.ca.old is None
    assert pki.certificates(c.ca.bundle) == [b.ca.current.cert_pem]
    assert c.annotation == b.annotation
    assert c.waiting is None


def test_ca_renewal_asked_for_by_annotation() -> None:
    s = spec(**TLS)
    first = settle(s)
    a = desired_tls.plan_pki(REF, s, first.ca, first.certs, wanted(3), pods_with(first, 3), NOW, renew_ca="1")
    assert a.ca.generation == 2
    assert a.ca.token == "1"  # noqa: S105 - a renewal request
    assert "asked for" in a.notes[0]


def test_a_renewal_is_carried_out_by_the_restart_safe_roll() -> None:
    """The plan only changes the pod template; the runbook's roll step restarts stale brokers one
    at a time, the controller last, each after can_restart (test_operator_reconcile covers the
    refusal); here: a new generation makes every running pod stale."""
    from tidelog.operator.decisions import roll_order

    s = spec(**TLS)
    first = settle(s)
    plan = desired_tls.plan_pki(REF, s, first.ca, first.certs, wanted(3), pods_with(first, 3), NOW, renew_certs="x")
    old = desired.desired_objects(REF, s, certificates=first.annotation)[-1]["metadata"]["annotations"]
    new = desired.desired_objects(REF, s, certificates=plan.annotation)[-1]["metadata"]["annotations"]
    assert old[HASH_ANNOTATION] != new[HASH_ANNOTATION]
    assert roll_order([0, 1, 2], controller_id=1) == [2, 0, 1]


# ----- cert-manager -----


def test_cert_manager_certificate_object() -> None:
    issuer = {"name": "ca", "kind": "ClusterIssuer"}
    s = spec(listeners={"internal": {"tls": True}},
             certificates={"validityDays": 90, "renewBeforeDays": 15, "issuer": issuer})  # fmt: skip
    cert = desired_certmanager.certificate(REF, s, ("203.0.113.5", "kafka.example"))
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["kind"] == "Certificate"
    assert cert["metadata"]["ownerReferences"] == [REF.owner_reference()]
    body = cert["spec"]
    assert body["secretName"] == "demo-broker-certs"
    assert body["issuerRef"] == {"name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert body["duration"] == "2160h"
    assert body["renewBefore"] == "360h"
    assert "*.demo-brokers.prod.svc" in body["dnsNames"]
    assert "demo.prod.svc" in body["dnsNames"]
    assert "kafka.example" in body["dnsNames"]
    assert body["ipAddresses"] == ["203.0.113.5"]
    assert {"server auth", "client auth"} <= set(body["usages"])
    assert body["additionalOutputFormats"] == [{"type": "CombinedPEM"}]
    assert sets(container(s))["ssl.keystore.location"] == "/etc/tidelog/tls/tls-combined.pem"
    ca = pki.new_ca("cm", NOW, 30)
    leaf = pki.issue(ca, "demo-broker", ["x"], NOW, 10)
    secret = {"data": {k: base64.b64encode(v.encode()).decode() for k, v in
                       {"ca.crt": ca.cert_pem, "tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem,
                        "tls-combined.pem": leaf.key_pem + leaf.cert_pem}.items()}}  # fmt: skip
    assert (
        desired_certmanager.cert_manager_annotation(secret)
        == f"ca={pki.fingerprint(ca.cert_pem)},certs={pki.fingerprint(leaf.cert_pem)}"
    )
    assert desired_certmanager.cert_manager_annotation({"data": {}}) is None


# ----- the certificates step (I/O) -----


class FakeKube:
    """Just what the certificates step uses."""

    def __init__(self, crds: set[str] | None = None) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.crds = crds or set()
        self.applied: list[tuple[str, str]] = []

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["name"])
        self.objects[key] = obj
        self.applied.append(key)
        return obj

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind == "CustomResourceDefinition":
            return {"metadata": {"name": name}} if name in self.crds else None
        return self.objects.get((kind, name))

    async def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        return []

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        return self.objects.pop((kind, name), None) is not None

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        return None


def test_the_step_stores_the_ca_before_the_certificates_and_publishes_the_ca_certificate() -> None:
    kube = FakeKube()
    body = {"metadata": {"name": "demo", "namespace": "prod", "uid": REF.uid}}
    out = asyncio.run(certificates.reconcile_certificates(kube, REF, spec(**TLS), body, 3, {}, None, NOW))
    assert kube.applied == [("Secret", "demo-cluster-ca"), ("Secret", "demo-broker-certs"),
                            ("Secret", "demo-cluster-ca-cert")]  # fmt: skip
    assert out.status.issuer == "ClusterCA"
    assert out.status.cert_generation == 1
    assert out.status.ca_generation == 1
    assert out.annotation.startswith("ca=")
    assert out.annotation.endswith(",certs=1")
    kube.applied.clear()
    again = asyncio.run(certificates.reconcile_certificates(kube, REF, spec(**TLS), body, 3, {}, None, NOW))
    assert again.annotation == out.annotation
    assert kube.applied == [("Secret", "demo-cluster-ca-cert")]  # nothing else rewritten


def test_cert_manager_missing_or_not_issued_yet() -> None:
    s = spec(listeners={"internal": {"tls": True}}, certificates={"issuer": {"name": "ca"}})
    body: dict[str, Any] = {"metadata": {}}
    with pytest.raises(certificates.CertificatesPending, match="cert-manager is not installed") as missing:
        asyncio.run(certificates.reconcile_certificates(FakeKube(), REF, s, body, 3, {}, None, NOW))
    assert missing.value.degraded
    assert missing.value.reason == "CertManagerMissing"
    kube = FakeKube({desired_certmanager.CERTIFICATE_CRD})
    with pytest.raises(certificates.CertificatesPending, match="waiting for cert-manager") as pending:
        asyncio.run(certificates.reconcile_certificates(kube, REF, s, body, 3, {}, None, NOW))
    assert not pending.value.degraded
    assert ("Certificate", "demo-broker-certs") in kube.objects


# ----- whole runbook passes (reconcile.Pass) -----


class RunbookKube(FakeKube):
    """Enough of Kubernetes for whole passes: objects by kind and name, label selectors, deletes."""

    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[str] = []
        self.status: dict[str, Any] = {}

    async def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        wanted = dict(kv.split("=", 1) for kv in selector.split(",") if kv)
        return [o for (k, _), o in self.objects.items() if k == kind
                and wanted.items() <= (o["metadata"].get("labels") or {}).items()]  # fmt: skip

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        self.deleted.append(name)
        return self.objects.pop((kind, name), None) is not None

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        if kind == "Cluster":
            self.status = status

    def start_pods(self, brokers: range) -> None:
        """The pods the StatefulSet's current template makes (its annotations), Ready."""
        template = self.objects[("StatefulSet", "demo")]["spec"]["template"]
        for b in brokers:
            self.objects[("Pod", f"demo-{b}")] = {
                "metadata": {"name": f"demo-{b}", "labels": REF.selector_labels(),
                             "annotations": dict(template["metadata"]["annotations"])},
                "status": {"conditions": [{"type": "Ready", "status": "True"}], "hostIP": "10.0.0.1"},
            }  # fmt: skip


class RunbookAdmin:
    def __init__(self) -> None:
        self.refuse: set[int] = set()
        self.tokens: set[str | None] = set()

    @contextlib.asynccontextmanager
    async def connect(self, _target: str, token: str | None = None) -> AsyncIterator[RunbookAdmin]:
        self.tokens.add(token)
        yield self

    async def describe_cluster(self) -> ClusterDesc:
        return ClusterDesc("c", 0, [BrokerDesc(i, f"demo-{i}", 9092, None, True, "RUNNING") for i in range(3)], 0, 0)

    async def can_restart(self, broker_id: int) -> RestartCheck:
        ok = broker_id not in self.refuse
        return RestartCheck(broker_id, ok, [] if ok else ["t-0: ISR would drop below min.insync.replicas"])


def run(kube: RunbookKube, admin: RunbookAdmin, annotations: dict[str, str] | None = None) -> Pass:
    body = {"metadata": {"name": "demo", "namespace": "prod", "uid": REF.uid, "generation": 1,
                         "annotations": annotations or {}},
            "spec": {"replicas": 3, **TLS}, "status": kube.status}  # fmt: skip
    p = Pass(kube, admin.connect, body, "tidelog/broker", 60.0)  # type: ignore[arg-type]
    asyncio.run(p.run())
    return p


def test_a_tls_cluster_runs_its_pki_before_its_pods_and_rolls_a_renewal_only_when_safe() -> None:
    kube, admin = RunbookKube(), RunbookAdmin()
    run(kube, admin)
    assert kube.applied.index(("Secret", "demo-broker-certs")) < kube.applied.index(("StatefulSet", "demo"))
    assert kube.applied.index(("Secret", "demo-admin-token")) < kube.applied.index(("StatefulSet", "demo"))
    kube.start_pods(range(3))
    run(kube, admin)
    ready = next(c for c in kube.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert None not in admin.tokens  # every admin call of a secured cluster carries its token
    assert all(len(t or "") >= 32 for t in admin.tokens)
    assert kube.status["certificates"]["certGeneration"] == 1
    first = kube.objects[("StatefulSet", "demo")]["metadata"]["annotations"][HASH_ANNOTATION]
    admin.refuse = {2}  # restarting broker 2 would take a partition under min ISR
    run(kube, admin, {desired_tls.RENEW_CERTS_ANNOTATION: "1"})
    assert kube.status["certificates"]["certGeneration"] == 2
    assert kube.objects[("StatefulSet", "demo")]["metadata"]["annotations"][HASH_ANNOTATION] != first
    assert kube.deleted == []  # the roll waits: nothing restarted
    reconciling = next(c for c in kube.status["conditions"] if c["type"] == "Reconciling")
    assert reconciling["reason"] == "RollWaiting"
    admin.refuse = set()
    run(kube, admin, {desired_tls.RENEW_CERTS_ANNOTATION: "1"})
    assert kube.deleted == ["demo-2"]  # one broker, highest ordinal first (0 is the controller: last)
    run(kube, admin, {desired_tls.RENEW_CERTS_ANNOTATION: "1"})
    assert kube.deleted == ["demo-2"]  # waits for it to come back
    assert kube.status["certificates"]["certGeneration"] == 2  # acted on once


def test_a_cert_manager_cluster_waits_degraded_without_cert_manager() -> None:
    kube, admin = RunbookKube(), RunbookAdmin()
    body = {"metadata": {"name": "demo", "namespace": "prod", "uid": REF.uid, "generation": 1},
            "spec": {"replicas": 3, **TLS, "certificates": {"issuer": {"name": "ca"}}}}  # fmt: skip
    asyncio.run(Pass(kube, admin.connect, body, "tidelog/broker", 60.0).run())  # type: ignore[arg-type]
    degraded = next(c for c in kube.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "CertManagerMissing")
    assert ("StatefulSet", "demo") not in kube.objects  # no broker starts without its certificate


def test_an_impossible_listener_combination_is_degraded_with_a_readable_reason() -> None:
    kube, admin = RunbookKube(), RunbookAdmin()
    body = {"metadata": {"name": "demo", "namespace": "prod", "uid": REF.uid, "generation": 1},
            "spec": {"listeners": {"internal": {"authentication": "tls"}}}}  # fmt: skip
    asyncio.run(Pass(kube, admin.connect, body, "tidelog/broker", 60.0).run())  # type: ignore[arg-type]
    degraded = next(c for c in kube.status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "authentication: tls needs tls: true" in degraded["message"]
    assert kube.applied == []
