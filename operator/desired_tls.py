"""Listener security and the broker certificates of a Cluster, as pure functions.

Job: what ``listeners.internal``/``listeners.external`` (``tls``, ``authentication``) mean for the
broker's command line, which names each broker certificate carries, the Secrets that hold them,
and the rotation decisions (``plan_pki``); the cert-manager variant is ``desired_certmanager``.
Neighbours: ``pki`` makes keys and certificates; ``certificates`` does the I/O; ``desired`` puts
the arguments, the volume and the ``tidelog.dev/certificates`` annotation into the pod template.

Listeners. tls false + authentication none is PLAINTEXT (the default: nothing here applies and the
brokers run exactly as before). tls true is SSL; with authentication ``tls`` the listener asks for
a client certificate signed by the cluster CA (``ssl.client.auth=required``); ``scram-sha-512`` is
SASL_SSL (SASL_PLAINTEXT without tls). As soon as any listener is secured, the brokers replicate
over their own REPLICATION listener (port 9091, SSL with mutual TLS, every broker's certificate
signed by the cluster CA): inter-broker traffic never changes when client-facing settings change,
and is never less protected than the clients' (Strimzi's replication listener, in small).

Rotation (the self-made CA; Strimzi's scheme in small). The pod template carries
``tidelog.dev/certificates: ca=<fingerprint of the newest CA>,certs=<broker cert generation>``, so
a change of either is a pod-template change, rolled by the existing machinery: one broker at a
time, each only when ``can_restart`` says no partition goes under min ISR, the controller last.
- Broker certificates expiring (fewer than ``renewBeforeDays`` left), missing a wanted name (e.g.
  a new load-balancer address) or asked for (``tidelog.dev/renew-certificates``): all are reissued
  by the same CA, the generation grows, one roll. Every broker already trusts that CA.
- A new broker (scale-up) gets its certificate before its pod starts; the others do not restart.
- CA expiring (or ``tidelog.dev/renew-ca``): three phases so that trust is never broken.
  A: a new CA is made; the old one stays (its key too) as ``old-ca.*``. The trust bundle (``ca.crt``
     in the mounted Secret and in ``<cluster>-cluster-ca-cert``) holds both; broker certificates
     are not touched. The annotation's ``ca=`` changes: a roll, after which every broker trusts both.
  B: once every broker pod carries the new ``ca=``, the broker certificates are reissued by the new
     CA: a second roll. A restarted broker shows a new-CA certificate to peers that trust it already.
  C: once every pod carries the new ``certs=`` generation, the old CA leaves the Secrets. The
     annotation does not change (no third roll): brokers drop the old CA at their next restart,
     and nothing is signed by it any more. Clients should trust the new CA (``<cluster>-cluster-ca-cert``
     holds both from phase A on) before phase B ends.
With cert-manager (``desired_certmanager``) the issuer renews the certificate; the annotation then
carries the fingerprints of its ``ca.crt`` and ``tls.crt``, so a renewal is a roll too.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tidelog.operator import pki
from tidelog.operator.models import Authentication, ClusterSpec
from tidelog.operator.names import REPLICATION_PORT, ClusterRef

TLS_MOUNT = "/etc/tidelog/tls"
ADMIN_TOKEN_MOUNT = "/etc/tidelog/admin"  # noqa: S105 - a path, not a secret
ADMIN_TOKEN_FILE = f"{ADMIN_TOKEN_MOUNT}/token"
TRUSTSTORE = f"{TLS_MOUNT}/ca.crt"
CERT_MANAGER_KEYSTORE = f"{TLS_MOUNT}/tls-combined.pem"  # cert-manager's CombinedPEM output (key + chain)
CERTS_ANNOTATION = "tidelog.dev/certificates"
RENEW_CERTS_ANNOTATION = "tidelog.dev/renew-certificates"
RENEW_CA_ANNOTATION = "tidelog.dev/renew-ca"
CA_GENERATION_ANNOTATION = "tidelog.dev/ca-generation"
CERT_GENERATION_ANNOTATION = "tidelog.dev/cert-generation"
CLUSTER_DOMAIN = "cluster.local"
SASL_MECHANISM = "SCRAM-SHA-512"


class SecurityError(ValueError):
    """A listener combination the operator cannot build (reported as Degraded/InvalidSpec)."""


def protocol(tls: bool, authentication: Authentication) -> str:
    """Kafka's security protocol of a listener."""
    if authentication == "tls" and not tls:
        raise SecurityError("authentication: tls needs tls: true (the client certificate is checked in the handshake)")
    if authentication == "scram-sha-512":
        return "SASL_SSL" if tls else "SASL_PLAINTEXT"
    return "SSL" if tls else "PLAINTEXT"


def validate(spec: ClusterSpec) -> None:
    """Refuse what the CRD's CEL rules refuse too (for a CRD installed without them)."""
    internal, external = spec.listeners.internal, spec.listeners.external
    for name, listener in (("internal", internal), ("external", external)):
        if listener is not None and listener.authentication == "tls" and not listener.tls:
            raise SecurityError(f"listeners.{name}: authentication: tls needs tls: true")
    c = spec.certificates
    if c.renew_before_days >= c.validity_days:
        raise SecurityError(
            f"certificates.renewBeforeDays {c.renew_before_days} must be below validityDays {c.validity_days}"
        )
    if c.validity_days > c.ca_validity_days:
        raise SecurityError(f"certificates.validityDays {c.validity_days} exceeds caValidityDays {c.ca_validity_days}")
    for principal in spec.authorization.super_users if spec.authorization is not None else []:
        if not principal.startswith("User:") or len(principal) <= len("User:") or ";" in principal:
            raise SecurityError(f"authorization.superUsers: {principal!r} is not a principal User:<name> (no ';')")


def secured(spec: ClusterSpec) -> bool:
    """Any listener with TLS or authentication, or ACLs: certificates, a REPLICATION listener, mounted
    keys (with ACLs the brokers must prove who they are to each other)."""
    if spec.authorization is not None:
        return True
    internal, external = spec.listeners.internal, spec.listeners.external
    pairs = [(internal.tls, internal.authentication)]
    if external is not None:
        pairs.append((external.tls, external.authentication))
    return any(tls or auth != "none" for tls, auth in pairs)


def uses_cert_manager(spec: ClusterSpec) -> bool:
    return spec.certificates.issuer is not None


def keystore(spec: ClusterSpec) -> str:
    """The broker's ssl.keystore.location (one PEM: key + certificate); ``$(POD_NAME)`` is expanded
    by the kubelet, so each broker reads its own file of the shared Secret."""
    return CERT_MANAGER_KEYSTORE if uses_cert_manager(spec) else f"{TLS_MOUNT}/$(POD_NAME).pem"


def security_args(spec: ClusterSpec, ref: ClusterRef) -> list[str]:
    """``--set`` arguments of a secured cluster: protocols, TLS files, client auth, SASL, ACLs."""
    internal, external = spec.listeners.internal, spec.listeners.external
    protocols = [f"INTERNAL:{protocol(internal.tls, internal.authentication)}"]
    if external is not None:
        protocols.append(f"EXTERNAL:{protocol(external.tls, external.authentication)}")
    protocols.append("REPLICATION:SSL")
    sets = [
        f"listener.security.protocol.map={','.join(protocols)}",
        "inter.broker.listener.name=REPLICATION",
        f"ssl.keystore.location={keystore(spec)}",
        f"ssl.truststore.location={TRUSTSTORE}",
        "listener.name.replication.ssl.client.auth=required",
        f"admin.token.file={ADMIN_TOKEN_FILE}",
    ]
    for name, listener in (("internal", internal), ("external", external)):
        if listener is None:
            continue
        if listener.authentication == "tls":
            sets.append(f"listener.name.{name}.ssl.client.auth=required")
        elif listener.authentication == "scram-sha-512":
            sets.append(f"listener.name.{name}.sasl.enabled.mechanisms={SASL_MECHANISM}")
    if spec.authorization is not None:
        brokers = f"User:CN={broker_common_name(ref)},O={pki.ORGANIZATION}"
        supers = [brokers, *(p for p in spec.authorization.super_users if p != brokers)]
        sets += [f"authorizer.class.name={AUTHORIZER}", f"super.users={';'.join(supers)}"]
    out: list[str] = []
    for s in sets:
        out += ["--set", s]
    return out


AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def replication_address(ref: ClusterRef) -> str:
    return f"$(POD_NAME).{ref.headless_service}.$(POD_NAMESPACE).svc:{REPLICATION_PORT}"


def tls_volume(ref: ClusterRef) -> dict[str, Any]:
    """The broker Secret (the operator's, or cert-manager's), readable by the broker's group only."""
    return {"name": "tls", "secret": {"secretName": ref.broker_certs_secret, "defaultMode": 0o440}}


def tls_mount() -> dict[str, Any]:
    return {"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True}


def admin_token_volume(ref: ClusterRef) -> dict[str, Any]:
    """The admin API's bearer token (a secured cluster's control plane takes no anonymous calls)."""
    return {"name": "admin-token", "secret": {"secretName": ref.admin_token_secret, "defaultMode": 0o440}}


def admin_token_mount() -> dict[str, Any]:
    return {"name": "admin-token", "mountPath": ADMIN_TOKEN_MOUNT, "readOnly": True}


def admin_token_secret(ref: ClusterRef, token: str) -> dict[str, Any]:
    return _secret(ref, ref.admin_token_secret, {"token": token}, {})


# ----- names -----


def service_names(service: str, namespace: str) -> list[str]:
    svc = f"{service}.{namespace}.svc"
    return [service, f"{service}.{namespace}", svc, f"{svc}.{CLUSTER_DOMAIN}"]


def broker_sans(ref: ClusterRef, broker: int, external: tuple[str, ...] = ()) -> frozenset[str]:
    """What broker N's certificate names: its pod's names through the headless Service (what it
    advertises on INTERNAL and REPLICATION), the bootstrap and headless Services' names, and
    ``external`` (its external addresses, when the external listener has TLS)."""
    pod = f"{ref.pod(broker)}.{ref.headless_service}.{ref.namespace}"
    return frozenset(
        [
            f"{pod}.svc",
            f"{pod}.svc.{CLUSTER_DOMAIN}",
            *service_names(ref.bootstrap_service, ref.namespace),
            *service_names(ref.headless_service, ref.namespace),
            *external,
        ]
    )


def broker_common_name(ref: ClusterRef) -> str:
    """Every broker's certificate subject CN: one principal for all brokers,
    ``User:CN=<cluster>-broker,O=tidelog.dev`` (what an ACL super user names)."""
    return f"{ref.name}-broker"


# ----- Secrets -----


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def text(secret: Mapping[str, Any] | None, key: str) -> str | None:
    data = (secret or {}).get("data") or {}
    return base64.b64decode(data[key]).decode() if key in data else None


def _annotation(secret: Mapping[str, Any] | None, key: str) -> str | None:
    value = (((secret or {}).get("metadata") or {}).get("annotations") or {}).get(key)
    return str(value) if value is not None else None


def _secret(ref: ClusterRef, name: str, data: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    meta = ref.metadata(name, component="certificates", annotations=annotations)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
            "data": {k: b64(v) for k, v in sorted(data.items())}}  # fmt: skip


@dataclass(frozen=True)
class CaState:
    """The cluster CA Secret: the CA, its generation, the previous CA during a renewal, and the
    last ``tidelog.dev/renew-ca`` value acted on."""

    current: pki.KeyPair
    generation: int
    old: pki.KeyPair | None = None
    token: str = ""

    @property
    def bundle(self) -> str:
        """The trust bundle: the current CA, then the previous one while a renewal runs."""
        return self.current.cert_pem + (self.old.cert_pem if self.old else "")


@dataclass(frozen=True)
class BrokerCerts:
    """The broker Secret: each broker's key and certificate, their generation, the CA generation
    that signed them, and the last ``tidelog.dev/renew-certificates`` value acted on."""

    certs: dict[int, pki.KeyPair]
    generation: int
    ca_generation: int
    token: str = ""


def ca_secret(ref: ClusterRef, ca: CaState) -> dict[str, Any]:
    data = {"ca.key": ca.current.key_pem, "ca.crt": ca.current.cert_pem}
    if ca.old is not None:
        data |= {"old-ca.key": ca.old.key_pem, "old-ca.crt": ca.old.cert_pem}
    return _secret(ref, ref.cluster_ca_secret, data,
                   {CA_GENERATION_ANNOTATION: str(ca.generation), RENEW_CA_ANNOTATION: ca.token})  # fmt: skip


def ca_cert_secret(ref: ClusterRef, bundle: str, generation: int | None) -> dict[str, Any]:
    """What clients trust: ``ca.crt`` only (both CAs during a CA renewal)."""
    annotations = {CA_GENERATION_ANNOTATION: str(generation)} if generation is not None else {}
    return _secret(ref, ref.cluster_ca_cert_secret, {"ca.crt": bundle}, annotations)


def broker_secret(ref: ClusterRef, certs: BrokerCerts, bundle: str) -> dict[str, Any]:
    """``<pod>.pem`` (key, then certificate: the broker's ssl.keystore.location) per broker and
    ``ca.crt`` (ssl.truststore.location)."""
    data = {f"{ref.pod(b)}.pem": kp.key_pem + kp.cert_pem for b, kp in certs.certs.items()}
    data["ca.crt"] = bundle
    return _secret(ref, ref.broker_certs_secret, data, {
        CERT_GENERATION_ANNOTATION: str(certs.generation), CA_GENERATION_ANNOTATION: str(certs.ca_generation),
        RENEW_CERTS_ANNOTATION: certs.token,
    })  # fmt: skip


def read_ca(secret: Mapping[str, Any] | None) -> CaState | None:
    key, cert = text(secret, "ca.key"), text(secret, "ca.crt")
    if not key or not cert:
        return None
    old_key, old_cert = text(secret, "old-ca.key"), text(secret, "old-ca.crt")
    old = pki.KeyPair(old_key, old_cert) if old_key and old_cert else None
    generation = int(_annotation(secret, CA_GENERATION_ANNOTATION) or 1)
    return CaState(pki.KeyPair(key, cert), generation, old, _annotation(secret, RENEW_CA_ANNOTATION) or "")


def _split_pem(pem: str) -> pki.KeyPair | None:
    marker = "-----BEGIN CERTIFICATE-----"
    if marker not in pem or "PRIVATE KEY" not in pem:
        return None
    at = pem.index(marker)
    return pki.KeyPair(pem[:at], pem[at:])


def read_broker_certs(ref: ClusterRef, secret: Mapping[str, Any] | None) -> BrokerCerts | None:
    if secret is None:
        return None
    certs: dict[int, pki.KeyPair] = {}
    prefix = f"{ref.name}-"
    for key in secret.get("data") or {}:
        if key.startswith(prefix) and key.endswith(".pem") and key[len(prefix) : -4].isdigit():
            kp = _split_pem(text(secret, key) or "")
            if kp is not None:
                certs[int(key[len(prefix) : -4])] = kp
    return BrokerCerts(
        certs,
        int(_annotation(secret, CERT_GENERATION_ANNOTATION) or 1),
        int(_annotation(secret, CA_GENERATION_ANNOTATION) or 1),
        _annotation(secret, RENEW_CERTS_ANNOTATION) or "",
    )


# ----- the pods' view -----


def certs_annotation(trust: str, certs: str | int) -> str:
    return f"ca={trust},certs={certs}"


@dataclass(frozen=True)
class PodCerts:
    """What a broker pod was started with (its ``tidelog.dev/certificates`` annotation)."""

    trust: str | None = None
    certs: str | None = None

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> PodCerts:
        value = ((pod.get("metadata") or {}).get("annotations") or {}).get(CERTS_ANNOTATION) or ""
        parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
        return cls(parts.get("ca"), parts.get("certs"))


# ----- rotation -----


@dataclass
class PkiPlan:
    """What the Secrets should hold after this pass, and what to report."""

    ca: CaState
    certs: BrokerCerts
    notes: list[str] = dataclasses.field(default_factory=list)
    waiting: str | None = None

    @property
    def annotation(self) -> str:
        return certs_annotation(pki.fingerprint(self.ca.current.cert_pem), self.certs.generation)


def _expiring(cert_pem: str, now: datetime, window: timedelta) -> bool:
    return pki.info(cert_pem).not_after - now < window


def plan_pki(
    ref: ClusterRef,
    spec: ClusterSpec,
    ca: CaState | None,
    certs: BrokerCerts | None,
    wanted: Mapping[int, frozenset[str]],
    pods: Mapping[int, PodCerts],
    now: datetime,
    renew_ca: str = "",
    renew_certs: str = "",
) -> PkiPlan:
    """The CA and broker certificates to keep, make or reissue (see the module's docstring).

    ``wanted``: broker id -> the names its certificate must carry (every broker the StatefulSet
    has in this pass); ``pods``: broker id -> what its running pod was started with;
    ``renew_ca``/``renew_certs``: the Cluster's renewal annotations (a new value asks for a renewal).
    """
    c = spec.certificates
    window = timedelta(days=c.renew_before_days)
    notes: list[str] = []
    waiting: str | None = None
    if ca is None:
        ca = CaState(pki.new_ca(f"{ref.name}-cluster-ca v1", now, c.ca_validity_days), 1, None, renew_ca)
        certs = None  # nothing signed by another CA is kept
        notes.append("made the cluster CA")
    elif ca.old is None and (renew_ca != ca.token or _expiring(ca.current.cert_pem, now, window)):
        gen = ca.generation + 1
        why = "asked for" if renew_ca != ca.token else "expiring"
        ca = CaState(pki.new_ca(f"{ref.name}-cluster-ca v{gen}", now, c.ca_validity_days), gen, ca.current, renew_ca)
        notes.append(f"renewing the cluster CA ({why}): brokers restart to trust both CAs first")

    def issue(signer: pki.KeyPair, broker: int) -> pki.KeyPair:
        return pki.issue(signer, broker_common_name(ref), wanted[broker], now, c.validity_days)

    trust = pki.fingerprint(ca.current.cert_pem)
    if certs is None:
        certs = BrokerCerts({b: issue(ca.current, b) for b in wanted}, 1, ca.generation, renew_certs)
        notes.append(f"issued broker certificates {sorted(wanted)}")
    elif certs.ca_generation != ca.generation:  # a CA renewal between phases A and B
        untrusting = sorted(b for b, p in pods.items() if p.trust != trust)
        if ca.old is None or not untrusting:
            certs = BrokerCerts({b: issue(ca.current, b) for b in wanted}, certs.generation + 1, ca.generation,
                                renew_certs)  # fmt: skip
            notes.append("every broker trusts the new CA: reissued the broker certificates with it")
        else:
            signer = ca.old  # new brokers get certificates the others (not restarted yet) trust
            kept = {b: kp for b, kp in certs.certs.items() if b in wanted}
            certs = dataclasses.replace(certs, certs={**kept, **{b: issue(signer, b) for b in wanted if b not in kept}})
            waiting = f"CA renewal: brokers {untrusting} do not trust the new CA yet (rolling)"
    else:
        existing = {b: kp for b, kp in certs.certs.items() if b in wanted}
        stale: list[int] = []
        reason = ""
        if renew_certs != certs.token:
            stale, reason = sorted(existing), "asked for"
        elif any(_expiring(kp.cert_pem, now, window) for kp in existing.values()):
            stale, reason = sorted(existing), "expiring"
        else:
            stale = sorted(b for b, kp in existing.items() if not wanted[b] <= pki.info(kp.cert_pem).sans)
            reason = "names changed"
        new = sorted(b for b in wanted if b not in existing)
        if stale:
            fresh = {b: issue(ca.current, b) for b in wanted if b in stale or b in new}
            certs = BrokerCerts({**existing, **fresh}, certs.generation + 1, ca.generation, renew_certs)
            notes.append(f"reissued broker certificates {stale} ({reason})")
        elif new:
            certs = dataclasses.replace(certs, certs={**existing, **{b: issue(ca.current, b) for b in new}})
            notes.append(f"issued certificates for new brokers {new}")
        elif len(existing) != len(certs.certs):
            certs = dataclasses.replace(certs, certs=existing)
    if ca.old is not None and certs.ca_generation == ca.generation and waiting is None:
        behind = sorted(b for b, p in pods.items() if p.certs != str(certs.generation))
        if behind:
            waiting = f"CA renewal: brokers {behind} still show certificates of the old CA (rolling)"
        else:
            ca = dataclasses.replace(ca, old=None)
            notes.append("CA renewal done: the old CA left the trust bundle")
    return PkiPlan(ca, certs, notes, waiting)


def earliest_expiry(certs: BrokerCerts) -> datetime | None:
    return min((pki.info(kp.cert_pem).not_after for kp in certs.certs.values()), default=None)
