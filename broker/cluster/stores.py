"""Opening the metadata store a broker's ``metadata.store`` setting names:

- ``standalone`` (or empty): no store; the lone broker keeps topics in its data directory;
- ``etcd://HOST:PORT[,HOST:PORT...]/CLUSTER``: etcd's v3 API, keys under ``/tidelog/CLUSTER/``;
- ``kubernetes://NAMESPACE/CLUSTER``: ConfigMaps and Leases in NAMESPACE, labelled with CLUSTER.
"""

from __future__ import annotations

from tidelog.broker.cluster.store import MetadataStore
from tidelog.broker.log.config import InvalidConfigError


def open_store(url: str, session_ttl_s: float) -> MetadataStore | None:
    if url in ("", "standalone"):
        return None
    scheme, sep, rest = url.partition("://")
    where, _, cluster = rest.partition("/")
    if not sep or not where or not cluster or "/" in cluster:
        raise InvalidConfigError(
            f"metadata.store={url!r}: expected etcd://HOST:PORT/CLUSTER or kubernetes://NAMESPACE/CLUSTER"
        )
    if scheme == "etcd":
        from tidelog.broker.cluster.etcd_store import EtcdStore  # noqa: PLC0415 - only members load gRPC

        return EtcdStore(where.split(","), f"/tidelog/{cluster}/", session_ttl_s=session_ttl_s)
    if scheme == "kubernetes":
        from tidelog.broker.cluster.k8s_store import KubernetesStore  # noqa: PLC0415

        return KubernetesStore(where, cluster, session_ttl_s=session_ttl_s)
    raise InvalidConfigError(f"metadata.store={url!r}: unknown scheme {scheme!r} (etcd, kubernetes or standalone)")
