"""User resources -> SCRAM credentials and ACLs through the admin API, and a Secret for the application.

Job: ``reconcile_users`` runs inside a Cluster's loop for all the Cluster's Users (as Topics do);
``delete_user`` is the User finalizer's work.

- Credentials: the Secret named after the User (owned by it, so Kubernetes deletes it with the User)
  holds ``username``, ``password``, ``sasl.jaas.config`` (Kafka's Java clients), ``sasl.mechanism``,
  the Cluster's ``bootstrap.servers`` and ``security.protocol`` (its internal listener's), and all
  of it as ``client.properties`` (Kafka's client config file: ``--command-config`` of Kafka's tools
  and ``tidelog``; with TLS, add the truststore from ``<cluster>-cluster-ca-cert``). The
  operator makes a random password once; a password a person writes into the Secret is taken over
  (status ``credentialsVersion`` remembers which version of the Secret the broker's SCRAM credential
  was made from, so each change is sent once).
- ACLs: the user's principal (``User:<name>``) gets exactly the declared bindings through the
  admin API's declarative ``SetAcls``: bindings added or removed by hand are reverted every pass.
- Deleting the User removes its bindings and credentials from the Cluster (finalizer); a Cluster that
  is gone holds nothing back.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from tidelog.broker.admin.model import AclDesc, ClusterAdmin
from tidelog.operator import desired_tls, pki, schema
from tidelog.operator.decisions import set_condition, status_patch
from tidelog.operator.kube import Kube
from tidelog.operator.models import API_VERSION
from tidelog.operator.user_models import AclRule, UserSpec, UserStatus

MECHANISM = "SCRAM-SHA-512"
ITERATIONS = 8192
SECURITY_DISABLED = 54
RESOURCE_TYPES = {"topic": "TOPIC", "group": "GROUP", "cluster": "CLUSTER", "transactionalId": "TRANSACTIONAL_ID"}


def user_name(user: dict[str, Any]) -> str:
    return str((user.get("spec") or {}).get("userName") or user["metadata"]["name"])


def principal_of(name: str, authentication: str = "scram-sha-512") -> str:
    """``User:<name>`` for SCRAM; a certificate's subject for tls (what the broker sees)."""
    if authentication == "tls":
        return f"User:CN={name},O={pki.ORGANIZATION}"
    return f"User:{name}"


def _authentication(user: dict[str, Any]) -> str:
    return str(((user.get("spec") or {}).get("authentication") or {}).get("type") or "scram-sha-512")


class UserNotReady(Exception):  # noqa: N818 - a condition to report, not a failure of the operator
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def _operation(name: str) -> str:
    """``IdempotentWrite`` -> ``IDEMPOTENT_WRITE``."""
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).upper()


def desired_acls(principal: str, rules: list[AclRule]) -> list[AclDesc]:
    """The bindings a User's rules stand for (one per operation)."""
    out: set[AclDesc] = set()
    for rule in rules:
        r = rule.resource
        name = "kafka-cluster" if r.type == "cluster" else (r.name or "")
        pattern = "PREFIXED" if r.pattern_type == "prefix" else "LITERAL"
        out.update(
            AclDesc(RESOURCE_TYPES[r.type], name, pattern, principal, rule.host, _operation(op), rule.type.upper())
            for op in rule.operations
        )
    return sorted(out, key=str)


def jaas(name: str, password: str) -> str:
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{name}" password="{quoted}";'


def secret_object(
    user: dict[str, Any], name: str, password: str, bootstrap: str, cluster: str, protocol: str = "SASL_PLAINTEXT"
) -> dict[str, Any]:
    meta = user["metadata"]
    data = {
        "username": name,
        "password": password,
        "sasl.jaas.config": jaas(name, password),
        "sasl.mechanism": MECHANISM,
        "bootstrap.servers": bootstrap,
        "security.protocol": protocol,
    }
    data["client.properties"] = "".join(
        f"{k}={data[k]}\n" for k in ("bootstrap.servers", "security.protocol", "sasl.mechanism", "sasl.jaas.config")
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {
                "app.kubernetes.io/managed-by": "tidelog-operator",
                "app.kubernetes.io/part-of": "tidelog",
                "tidelog.dev/cluster": cluster,
                "tidelog.dev/user": meta["name"],
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "User",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _password_of(secret: dict[str, Any] | None) -> str | None:
    raw = ((secret or {}).get("data") or {}).get("password")
    return base64.b64decode(raw).decode() if raw else None


async def reconcile_user(
    kube: Kube,
    admin: ClusterAdmin,
    user: dict[str, Any],
    cluster: dict[str, Any],
    now: str,
    scram_users: set[str] | None = None,
) -> UserStatus:
    """One User's pass: its Secret, its credential in Kafka, its ACLs; the status to write.
    ``scram_users``: who has a SCRAM-SHA-512 credential (read once per pass by ``reconcile_users``)."""
    if scram_users is None:
        scram_users = await _scram_users(admin)
    meta = user["metadata"]
    generation = meta.get("generation")
    status = schema.load(UserStatus, user.get("status") or {})
    spec = schema.load(UserSpec, user["spec"])
    name = user_name(user)
    principal = principal_of(name)
    status.user_name, status.principal, status.secret = name, principal, meta["name"]
    try:
        if spec.authentication.type == "tls":
            principal = status.principal = principal_of(name, "tls")
            status.certificate_not_after = await _tls_credentials(kube, user, name, cluster)
            if name in scram_users:  # switched from SCRAM: the password no longer works
                await admin.delete_scram_user(name)
            status.credentials_version = None
        else:
            status.certificate_not_after = None
            await _scram_credentials(kube, admin, user, name, cluster, status, name in scram_users)
    except UserNotReady as pending:
        status.conditions = set_condition(status.conditions, "Ready", False, pending.reason, pending.message, now,
                                          generation)  # fmt: skip
        status.observed_generation = generation
        return status
    rules = spec.authorization.acls if spec.authorization is not None else []
    acls = desired_acls(principal, rules)
    try:
        await admin.set_acls(principal, acls)
    except Exception as exc:
        if getattr(exc, "error_code", None) == SECURITY_DISABLED and not acls:
            pass  # nothing to grant and nothing could have been granted: fine without an authorizer
        elif getattr(exc, "error_code", None) == SECURITY_DISABLED:
            message = (f"the Cluster's brokers run no authorizer, so {len(acls)} ACL binding(s) cannot be set: "
                       "set spec.authorization on the Cluster")  # fmt: skip
            status.conditions = set_condition(status.conditions, "Ready", False, "AuthorizerDisabled", message,
                                              now, generation)  # fmt: skip
            status.observed_generation = generation
            return status
        else:
            raise
    status.acls = len(acls)
    status.observed_generation = generation
    status.conditions = set_condition(
        status.conditions, "Ready", True, "Reconciled",
        f"{principal}: credentials in Secret {meta['name']}, {len(acls)} ACL binding(s)", now, generation,
    )  # fmt: skip
    return status


async def _scram_credentials(
    kube: Kube,
    admin: ClusterAdmin,
    user: dict[str, Any],
    name: str,
    cluster: dict[str, Any],
    status: UserStatus,
    has_credential: bool,
) -> None:
    """The Secret with the password (made once), and the broker's SCRAM credential made from it."""
    meta = user["metadata"]
    bootstrap = str((cluster.get("status") or {}).get("bootstrapAddress") or "")
    existing = await kube.get("Secret", meta["namespace"], meta["name"])
    password = _password_of(existing) or secrets.token_urlsafe(24)
    protocol = str(cluster.get("securityProtocol") or "SASL_PLAINTEXT")
    wanted = secret_object(user, name, password, bootstrap, cluster["metadata"]["name"], protocol)
    if existing is None or any(existing.get("data", {}).get(k) != v for k, v in wanted["data"].items()):
        existing = await kube.apply(wanted)
    version = str(existing["metadata"].get("resourceVersion", ""))
    if status.credentials_version != version or not has_credential:
        await admin.set_scram_user(name, MECHANISM, password, ITERATIONS)
        status.credentials_version = version


async def _tls_credentials(kube: Kube, user: dict[str, Any], name: str, cluster: dict[str, Any]) -> str:
    """The Secret with a client certificate from the cluster CA (``user.crt``, ``user.key``,
    ``user.pem`` = key + certificate, ``ca.crt``), reissued when it nears its end (the Cluster's
    ``certificates.renewBeforeDays``) or the CA changed; returns when it expires."""
    meta = user["metadata"]
    cluster_name = cluster["metadata"]["name"]
    ca = desired_tls.read_ca(await kube.get("Secret", meta["namespace"], f"{cluster_name}-cluster-ca"))
    if ca is None:
        raise UserNotReady("ClusterCaMissing", f"Cluster {cluster_name} has no cluster CA (it makes one for a "
                           "listener with tls: true; none with a cert-manager issuer)")  # fmt: skip
    existing = await kube.get("Secret", meta["namespace"], meta["name"])
    cert, key = desired_tls.text(existing, "user.crt"), desired_tls.text(existing, "user.key")
    now = datetime.now(UTC)
    renew = timedelta(days=int(cluster.get("renewBeforeDays") or 30))
    subject = f"CN={name},O={pki.ORGANIZATION}"
    if (
        cert is None
        or key is None
        or not pki.verify_signed_by(cert, ca.current.cert_pem)
        or pki.info(cert).not_after - now < renew
        or pki.info(cert).subject != subject
    ):
        pair = pki.issue(ca.current, name, [], now, int(cluster.get("validityDays") or 365))
        cert, key = pair.cert_pem, pair.key_pem
    data = {"user.crt": cert, "user.key": key, "user.pem": key + cert, "ca.crt": ca.bundle}
    wanted = secret_object(user, name, "", "", cluster_name)
    wanted["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())}
    if existing is None or existing.get("data") != wanted["data"]:
        await kube.apply(wanted)
    return pki.rfc3339(pki.info(cert).not_after)


async def _scram_users(admin: ClusterAdmin) -> set[str]:
    return {u.name for u in await admin.list_scram_users() if MECHANISM in u.mechanisms}


async def reconcile_users(kube: Kube, admin: ClusterAdmin, cluster: dict[str, Any], now: str) -> int:
    """Every User of the Cluster; returns how many failed (each reports why in its status)."""
    namespace, name = cluster["metadata"]["namespace"], cluster["metadata"]["name"]
    users = [
        u
        for u in await kube.list("User", namespace)
        if (u.get("spec") or {}).get("clusterRef", {}).get("name") == name
        and not u["metadata"].get("deletionTimestamp")
    ]
    failed = 0
    scram_users = await _scram_users(admin) if users else set()  # one listing per pass, not per user
    for u in users:
        meta = u["metadata"]
        try:
            status = await reconcile_user(kube, admin, u, cluster, now, scram_users)
        except Exception as exc:  # one bad user must not stop the others
            failed += 1
            status = schema.load(UserStatus, u.get("status") or {})
            status.conditions = set_condition(status.conditions, "Ready", False, "AdminError", str(exc), now,
                                              meta.get("generation"))  # fmt: skip
        await kube.patch_status("User", namespace, meta["name"], status_patch(status))
    return failed


async def delete_user(admin: ClusterAdmin | None, user: dict[str, Any]) -> str:
    """The finalizer's work: the user's bindings and credentials leave the Cluster (its Secret goes
    with the User, by owner reference). Returns what was done, for the log."""
    name = user_name(user)
    if admin is None:
        return f"user {name}: its Cluster is gone, nothing to delete"
    try:
        removed = (await admin.set_acls(principal_of(name, _authentication(user)), []))[1]
    except Exception as exc:
        if getattr(exc, "error_code", None) != SECURITY_DISABLED:
            raise
        removed = 0
    deleted = await admin.delete_scram_user(name)
    return f"user {name}: {removed} ACL binding(s) removed, credentials {'deleted' if deleted else 'already gone'}"
