"""Names, labels, selectors, addresses and owner references of the objects a Cluster owns.

Job: the one place that says what ``Cluster demo`` in namespace ``ns`` is made of (StatefulSet
``demo``, pods ``demo-N``, headless Service ``demo-brokers``, bootstrap Service ``demo``, ...), so
the builders (``desired``, ``desired_services``, ``desired_access``) and the handlers agree.
Broker N is pod ``demo-N`` and has node.id N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tidelog.operator.models import API_VERSION

KAFKA_PORT = 9092
ADMIN_PORT = 9093
EXTERNAL_PORT = 9094  # the brokers' EXTERNAL listener (external Services target it)
REPLICATION_PORT = 9091  # the brokers' REPLICATION listener (mutual TLS, brokers only), with TLS on
MANAGED_BY = "tidelog-operator"
CLUSTER_LABEL = "tidelog.dev/cluster"
COMPONENT_LABEL = "app.kubernetes.io/component"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"  # set on StatefulSet pods by Kubernetes (>= 1.28)
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
HASH_ANNOTATION = "tidelog.dev/pod-template-hash"


@dataclass(frozen=True)
class ClusterRef:
    """A Cluster resource's identity: enough to name its objects and to own them."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ClusterRef:
        meta = body["metadata"]
        return cls(meta["name"], meta["namespace"], meta["uid"])

    # ----- names -----
    @property
    def statefulset(self) -> str:
        return self.name

    @property
    def headless_service(self) -> str:
        return f"{self.name}-brokers"

    @property
    def bootstrap_service(self) -> str:
        return self.name

    @property
    def metrics_service(self) -> str:
        return f"{self.name}-metrics"

    @property
    def external_bootstrap_service(self) -> str:
        return f"{self.name}-external-bootstrap"

    def external_service(self, broker_id: int) -> str:
        return f"{self.name}-{broker_id}-external"

    @property
    def config_map(self) -> str:
        return f"{self.name}-config"

    @property
    def cluster_ca_secret(self) -> str:
        """The cluster CA's key and certificate (the operator's own; never mounted)."""
        return f"{self.name}-cluster-ca"

    @property
    def admin_token_secret(self) -> str:
        """The bearer token of the brokers' admin API (secured clusters), ``token``."""
        return f"{self.name}-admin-token"

    @property
    def cluster_ca_cert_secret(self) -> str:
        """The CA certificate(s) clients trust (``ca.crt``), no key."""
        return f"{self.name}-cluster-ca-cert"

    @property
    def broker_certs_secret(self) -> str:
        """The brokers' keys and certificates and the trust bundle, mounted into the broker pods."""
        return f"{self.name}-broker-certs"

    @property
    def service_account(self) -> str:
        return f"{self.name}-broker"

    @property
    def role(self) -> str:
        return f"{self.name}-metadata"

    @property
    def pdb(self) -> str:
        return self.name

    def pod(self, broker_id: int) -> str:
        return f"{self.name}-{broker_id}"

    def pvc(self, broker_id: int) -> str:
        """The volume claim the StatefulSet makes for broker N (template ``data``)."""
        return f"data-{self.name}-{broker_id}"

    @property
    def metadata_store(self) -> str:
        """The brokers' ``metadata.store``: Leases and ConfigMaps in the Cluster's namespace."""
        return f"kubernetes://{self.namespace}/{self.name}"

    # ----- addresses -----
    def broker_host(self, broker_id: int) -> str:
        return f"{self.pod(broker_id)}.{self.headless_service}.{self.namespace}.svc"

    def broker_address(self, broker_id: int) -> str:
        """What broker N advertises to clients and peers."""
        return f"{self.broker_host(broker_id)}:{KAFKA_PORT}"

    def admin_address(self, broker_id: int) -> str:
        """Broker N's gRPC admin API (for ``tidelog.broker.admin.client.AdminClient``)."""
        return f"{self.broker_host(broker_id)}:{ADMIN_PORT}"

    @property
    def bootstrap_address(self) -> str:
        return f"{self.bootstrap_service}.{self.namespace}.svc:{KAFKA_PORT}"

    @property
    def admin_bootstrap_address(self) -> str:
        """Any ready broker's admin API, through the bootstrap Service."""
        return f"{self.bootstrap_service}.{self.namespace}.svc:{ADMIN_PORT}"

    # ----- labels -----
    def selector_labels(self) -> dict[str, str]:
        """Selects this Cluster's broker pods (immutable in the StatefulSet: never add to it)."""
        return {CLUSTER_LABEL: self.name, COMPONENT_LABEL: "broker"}

    @property
    def selector_string(self) -> str:
        """``status.labelSelector`` for the scale subresource."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.selector_labels().items()))

    def labels(self, component: str = "broker") -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "tidelog",
            "app.kubernetes.io/instance": self.name,
            COMPONENT_LABEL: component,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            CLUSTER_LABEL: self.name,
        }

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "Cluster",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str, component: str = "broker", **extra: Any) -> dict[str, Any]:
        """An owned object's metadata: name, namespace, labels, owner reference (+ ``extra`` keys)."""
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(component),
            "ownerReferences": [self.owner_reference()],
            **extra,
        }
