"""The certificates step of the Cluster runbook: the I/O around ``desired_tls``.

Job: read the CA and broker Secrets (or cert-manager's), let ``desired_tls.plan_pki`` decide what
to keep, make or reissue, write the Secrets back (CA first: a crash never leaves certificates signed
by a CA that was not stored), publish the CA certificate for clients, and return the pods'
``tidelog.dev/certificates`` annotation for the StatefulSet's template. A changed annotation is a
pod-template change, which the runbook's roll step restarts one broker at a time behind
``can_restart`` (never a partition under min ISR). Runs before the StatefulSet is applied, so a
new broker's certificate exists before its pod starts.

Only notes (what was renewed and why) and fingerprints are logged: never key material.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tidelog.operator import desired_certmanager, desired_tls, pki
from tidelog.operator.desired import ExternalAddress
from tidelog.operator.kube import Kube
from tidelog.operator.models import CertificatesStatus, ClusterSpec
from tidelog.operator.names import ClusterRef

log = logging.getLogger(__name__)


class CertificatesPending(Exception):  # noqa: N818 - a control-flow signal, turned into the runbook's Wait
    """The brokers cannot be (re)started yet: cert-manager missing, or its certificate not issued."""

    def __init__(self, reason: str, message: str, degraded: bool = False) -> None:
        super().__init__(message)
        self.reason, self.message, self.degraded = reason, message, degraded


@dataclass
class CertsOutcome:
    """The pods' annotation, the status block, and a renewal step being waited for (if any)."""

    annotation: str
    status: CertificatesStatus
    waiting: str | None = None


def external_names(
    spec: ClusterSpec,
    external: Mapping[int, ExternalAddress],
    bootstrap: ExternalAddress | None,
    pods: Mapping[int, dict[str, Any]],
) -> dict[int, tuple[str, ...]]:
    """Per broker, the external addresses its certificate must name (external listener with TLS):
    its load balancer's host and the bootstrap's, or (NodePort) the nodes the brokers run on, since
    the bootstrap node port answers on every node; plus ``alternativeNames``."""
    ext = spec.listeners.external
    if ext is None or not ext.tls:
        return {}
    common = set(ext.alternative_names)
    if bootstrap is not None and bootstrap.host:
        common.add(bootstrap.host)
    if ext.type == "NodePort":
        common.update(ip for p in pods.values() if (ip := (p.get("status") or {}).get("hostIP")))
    out: dict[int, tuple[str, ...]] = {}
    for broker, address in external.items():
        names = set(common)
        if address.host:
            names.add(address.host)
        out[broker] = tuple(sorted(names))
    return out


def _index(pod: Mapping[str, Any]) -> int | None:
    try:
        return int(pod["metadata"]["name"].rsplit("-", 1)[1])
    except (KeyError, ValueError, IndexError):
        return None


async def reconcile_certificates(
    kube: Kube,
    ref: ClusterRef,
    spec: ClusterSpec,
    body: Mapping[str, Any],
    brokers: int,
    external: Mapping[int, ExternalAddress],
    bootstrap: ExternalAddress | None,
    now: datetime,
) -> CertsOutcome:
    """Make, renew and publish the certificates of ``brokers`` brokers; the pods' annotation."""
    pods: dict[int, dict[str, Any]] = {}
    for p in await kube.list("Pod", ref.namespace, ref.selector_string):
        i = _index(p)
        if i is not None and i < brokers and not p["metadata"].get("deletionTimestamp"):
            pods[i] = p
    names = external_names(spec, external, bootstrap, pods)
    if desired_tls.uses_cert_manager(spec):
        all_names = tuple(sorted({n for ns in names.values() for n in ns}))
        return await _cert_manager(kube, ref, spec, all_names)
    annotations = body.get("metadata", {}).get("annotations") or {}
    ca = desired_tls.read_ca(await kube.get("Secret", ref.namespace, ref.cluster_ca_secret))
    certs = desired_tls.read_broker_certs(ref, await kube.get("Secret", ref.namespace, ref.broker_certs_secret))
    wanted = {b: desired_tls.broker_sans(ref, b, names.get(b, ())) for b in range(brokers)}
    plan = desired_tls.plan_pki(
        ref, spec, ca, certs, wanted, {b: desired_tls.PodCerts.of(p) for b, p in pods.items()}, now,
        renew_ca=str(annotations.get(desired_tls.RENEW_CA_ANNOTATION, "")),
        renew_certs=str(annotations.get(desired_tls.RENEW_CERTS_ANNOTATION, "")),
    )  # fmt: skip
    if plan.ca != ca:
        await kube.apply(desired_tls.ca_secret(ref, plan.ca))
    if plan.certs != certs or (ca is not None and plan.ca.bundle != ca.bundle):
        await kube.apply(desired_tls.broker_secret(ref, plan.certs, plan.ca.bundle))
    await kube.apply(desired_tls.ca_cert_secret(ref, plan.ca.bundle, plan.ca.generation))
    for note in plan.notes:
        log.info("%s/%s: certificates: %s", ref.namespace, ref.name, note)
    expiry = desired_tls.earliest_expiry(plan.certs)
    status = CertificatesStatus(
        issuer="ClusterCA",
        ca_generation=plan.ca.generation,
        ca_not_after=pki.rfc3339(pki.info(plan.ca.current.cert_pem).not_after),
        cert_generation=plan.certs.generation,
        not_after=pki.rfc3339(expiry) if expiry else None,
        message=plan.waiting or (plan.notes[-1] if plan.notes else None),
    )
    return CertsOutcome(plan.annotation, status, plan.waiting)


async def _cert_manager(kube: Kube, ref: ClusterRef, spec: ClusterSpec, names: tuple[str, ...]) -> CertsOutcome:
    issuer = spec.certificates.issuer
    assert issuer is not None
    if await kube.get("CustomResourceDefinition", "", desired_certmanager.CERTIFICATE_CRD) is None:
        raise CertificatesPending(
            "CertManagerMissing",
            f"certificates.issuer names {issuer.kind} {issuer.name}, but cert-manager is not installed "
            f"(no CRD {desired_certmanager.CERTIFICATE_CRD}); install it or remove certificates.issuer",
            degraded=True,
        )
    await kube.apply(desired_certmanager.certificate(ref, spec, names))
    secret = await kube.get("Secret", ref.namespace, ref.broker_certs_secret)
    annotation = desired_certmanager.cert_manager_annotation(secret or {})
    ca = desired_certmanager.cert_manager_ca(secret or {})
    if annotation is None or ca is None:
        raise CertificatesPending(
            "WaitingForCertificate",
            f"waiting for cert-manager ({issuer.kind} {issuer.name}) to issue Secret {ref.broker_certs_secret} "
            "with tls-combined.pem (cert-manager's CombinedPEM output)",
        )
    await kube.apply(desired_tls.ca_cert_secret(ref, ca, None))
    crt = desired_certmanager.cert_manager_certificate(secret or {})
    status = CertificatesStatus(
        issuer=f"cert-manager:{issuer.kind}/{issuer.name}",
        not_after=pki.rfc3339(pki.info(crt).not_after) if crt else None,
    )
    return CertsOutcome(annotation, status)
