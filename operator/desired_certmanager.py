"""The cert-manager path of the broker certificates (``spec.certificates.issuer``), pure builders.

Job: the ``cert-manager.io/v1`` Certificate that replaces the operator's own CA when cert-manager's
CRD is installed, and what the operator reads back from the Secret cert-manager writes
(``tls.crt``, ``tls.key``, ``ca.crt`` and the CombinedPEM ``tls-combined.pem`` the broker uses as
its keystore). One certificate for every broker, with wildcards over the headless Service, so a
scale-up needs no new certificate and no roll. cert-manager renews it itself; the pods' annotation
carries the fingerprints of ``ca.crt`` and ``tls.crt``, so a renewal is a restart-safe roll. A CA
change on the issuer's side needs a trust bundle spanning both CAs (e.g. trust-manager): not handled.
cert-manager writes its Secret without an owner reference (unless run with
``--enable-certificate-owner-ref``), so it may outlive the Cluster.
Neighbours: ``desired_tls`` (listeners, the operator's own CA), ``certificates`` (the I/O).

Not run here: the e2e machines have no cert-manager; tests/unit/test_operator_tls.py checks the
objects rendered.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from tidelog.operator import pki
from tidelog.operator.desired_tls import (
    CLUSTER_DOMAIN,
    broker_common_name,
    certs_annotation,
    service_names,
    text,
)
from tidelog.operator.models import ClusterSpec
from tidelog.operator.names import ClusterRef

CERTIFICATE_CRD = "certificates.cert-manager.io"


def cert_manager_names(ref: ClusterRef, external: tuple[str, ...] = ()) -> list[str]:
    """One certificate for every broker (cert-manager): wildcards over the headless Service, so a
    scale-up needs no new certificate and no roll."""
    wildcard = f"*.{ref.headless_service}.{ref.namespace}"
    names = {f"{wildcard}.svc", f"{wildcard}.svc.{CLUSTER_DOMAIN}"}
    names.update(service_names(ref.bootstrap_service, ref.namespace))
    names.update(service_names(ref.headless_service, ref.namespace))
    names.update(external)
    return sorted(names)


def certificate(ref: ClusterRef, spec: ClusterSpec, external: tuple[str, ...] = ()) -> dict[str, Any]:
    """The cert-manager Certificate for every broker, written into ``<cluster>-broker-certs``
    (``tls.key``, ``tls.crt``, ``ca.crt`` and the combined PEM the broker reads)."""
    c, issuer = spec.certificates, spec.certificates.issuer
    assert issuer is not None
    dns = [n for n in cert_manager_names(ref, external) if not _is_ip(n)]
    ips = [n for n in cert_manager_names(ref, external) if _is_ip(n)]
    body: dict[str, Any] = {
        "secretName": ref.broker_certs_secret,
        "secretTemplate": {"labels": ref.labels("certificates")},
        "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer.group},
        "commonName": broker_common_name(ref),
        "subject": {"organizations": [pki.ORGANIZATION]},
        "dnsNames": dns,
        "duration": f"{c.validity_days * 24}h",
        "renewBefore": f"{c.renew_before_days * 24}h",
        "privateKey": {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always"},
        "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
        "additionalOutputFormats": [{"type": "CombinedPEM"}],
    }
    if ips:
        body["ipAddresses"] = ips
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": ref.metadata(ref.broker_certs_secret, component="certificates"), "spec": body}  # fmt: skip


def cert_manager_annotation(secret: Mapping[str, Any]) -> str | None:
    """The pod annotation for cert-manager's Secret (None until it holds a certificate)."""
    ca, crt = text(secret, "ca.crt"), text(secret, "tls.crt")
    if not ca or not crt or not text(secret, "tls-combined.pem"):
        return None
    return certs_annotation(pki.fingerprint(ca), pki.fingerprint(crt))


def cert_manager_ca(secret: Mapping[str, Any]) -> str | None:
    return text(secret, "ca.crt")


def cert_manager_certificate(secret: Mapping[str, Any]) -> str | None:
    return text(secret, "tls.crt")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
