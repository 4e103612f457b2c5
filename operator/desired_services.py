"""The Services of a Cluster: headless (per-broker DNS), bootstrap (clients), metrics, external.

Job: pure builders, used by ``desired.desired_objects``.

- headless ``<cluster>-brokers``: ``publishNotReadyAddresses`` so a starting broker's name resolves
  before it is Ready (peers and the controller reach it while it catches up);
- bootstrap ``<cluster>``: Ready brokers only, Kafka (9092) and admin (9093) ports;
- metrics ``<cluster>-metrics``: every broker's metrics port, for a ServiceMonitor;
- external (``spec.listeners.external``): one NodePort/LoadBalancer Service per broker selecting
  its pod by ``statefulset.kubernetes.io/pod-name``, and a bootstrap one.
"""

from __future__ import annotations

from typing import Any

from tidelog.operator.models import ClusterSpec
from tidelog.operator.names import ADMIN_PORT, EXTERNAL_PORT, KAFKA_PORT, POD_NAME_LABEL, ClusterRef


def _port(name: str, port: int, node_port: int | None = None, target: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "port": port, "targetPort": target or name, "protocol": "TCP"}
    if node_port is not None:
        out["nodePort"] = node_port
    return out


def _service(ref: ClusterRef, name: str, component: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": ref.metadata(name, component, **meta), "spec": spec}


def headless_service(ref: ClusterRef) -> dict[str, Any]:
    return _service(
        ref,
        ref.headless_service,
        "broker",
        {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": ref.selector_labels(),
            "ports": [_port("kafka", KAFKA_PORT), _port("admin", ADMIN_PORT)],
        },
    )


def bootstrap_service(ref: ClusterRef) -> dict[str, Any]:
    return _service(
        ref,
        ref.bootstrap_service,
        "bootstrap",
        {
            "type": "ClusterIP",
            "selector": ref.selector_labels(),
            "ports": [_port("kafka", KAFKA_PORT), _port("admin", ADMIN_PORT)],
        },
    )


def metrics_service(ref: ClusterRef, spec: ClusterSpec) -> dict[str, Any]:
    return _service(
        ref,
        ref.metrics_service,
        "metrics",
        {"type": "ClusterIP", "selector": ref.selector_labels(), "ports": [_port("metrics", spec.metrics.port)]},
    )


def external_services(ref: ClusterRef, spec: ClusterSpec, brokers: int) -> list[dict[str, Any]]:
    """The bootstrap Service and one per broker ``0..brokers-1`` (empty without an external listener),
    on the brokers' EXTERNAL listener, whose advertised address is the per-broker Service's."""
    ext = spec.listeners.external
    if ext is None:
        return []
    base = ext.node_port_base
    meta = {"annotations": dict(ext.annotations)} if ext.annotations else {}
    common: dict[str, Any] = {"type": ext.type}
    if ext.type == "LoadBalancer":
        common["externalTrafficPolicy"] = "Local"  # the client's address reaches the broker; no extra hop
    out = [
        _service(
            ref,
            ref.external_bootstrap_service,
            "external-bootstrap",
            {
                **common,
                "selector": ref.selector_labels(),
                "ports": [_port("kafka", EXTERNAL_PORT, base - 1 if base else None, "external")],
            },
            **meta,
        )
    ]
    for broker in range(brokers):
        node_port = base + broker if base else None
        if node_port is not None and node_port > 32767:
            raise ValueError(f"listeners.external.nodePortBase {base}: broker {broker} would need port {node_port}")
        svc = _service(
            ref,
            ref.external_service(broker),
            "external",
            {
                **common,
                "selector": {**ref.selector_labels(), POD_NAME_LABEL: ref.pod(broker)},
                "ports": [_port("kafka", EXTERNAL_PORT, node_port, "external")],
            },
            **meta,
        )
        svc["metadata"]["labels"]["tidelog.dev/broker-id"] = str(broker)
        out.append(svc)
    return out


def services(ref: ClusterRef, spec: ClusterSpec, brokers: int) -> list[dict[str, Any]]:
    out = [headless_service(ref), bootstrap_service(ref)]
    if spec.metrics.enabled:
        out.append(metrics_service(ref, spec))
    return out + external_services(ref, spec, brokers)
