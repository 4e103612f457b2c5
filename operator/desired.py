"""The desired Kubernetes objects of a Cluster, as pure functions of the resource.

Job: ``desired_objects(ref, spec)`` -> every object the Cluster owns (ConfigMap, Services,
StatefulSet, PodDisruptionBudget, ServiceAccount, Role, RoleBinding), as plain dicts ready to apply.
No I/O: the handlers compare these with what exists and apply the difference.

The StatefulSet uses ``updateStrategy: OnDelete``: Kubernetes never restarts a broker by itself;
the operator rolls one broker at a time (restart-safety probe first). A pod whose
``tidelog.dev/pod-template-hash`` annotation differs from the StatefulSet's needs a restart; the hash
covers the pod template and the ConfigMap's server.properties, so a config change is a roll, a
replica change is not. Per-pod settings (node.id, advertised address, rack) are arguments built
from the pod's own name and labels (downward API), so one template serves every broker.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tidelog.operator import desired_tls, schema
from tidelog.operator.desired_access import pod_disruption_budget, rbac_objects
from tidelog.operator.desired_services import services
from tidelog.operator.models import DEFAULT_IMAGE_REPOSITORY, MANAGED_BROKER_KEYS, ClusterSpec
from tidelog.operator.names import (
    ADMIN_PORT,
    EXTERNAL_PORT,
    HASH_ANNOTATION,
    KAFKA_PORT,
    POD_INDEX_LABEL,
    REPLICATION_PORT,
    ClusterRef,
)

DATA_MOUNT = "/var/lib/tidelog/data"
LOG_DIRS = f"{DATA_MOUNT}/log"  # a subdirectory: a fresh volume's root may hold lost+found
CONFIG_MOUNT = "/etc/tidelog"
PROPERTIES = "server.properties"
# Per-broker values of the external listener (``broker.N.port``, ``broker.N.host``), read by each
# broker through Kafka's FileConfigProvider: one pod template serves every broker.
EXTERNAL_PROPERTIES = "external.properties"
FILE_PROVIDER_CLASS = "org.apache.kafka.common.config.provider.FileConfigProvider"
UID = 10001
SHUTDOWN_MARGIN_S = 30
STARTUP_PROBE_BUDGET_S = 3600  # log recovery may take long: never kill a broker recovering its log


class InvalidSpecError(ValueError):
    """A spec the API server accepted but the operator cannot build (reported in status)."""


def image(spec: ClusterSpec) -> str:
    return spec.image or f"{DEFAULT_IMAGE_REPOSITORY}:{spec.version}"


def _property_value(key: str, value: int | str | bool) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if "\n" in text or "\r" in text:
        raise InvalidSpecError(f"config {key}: a value may not contain a line break")
    return text


def server_properties(spec: ClusterSpec) -> str:
    """The Cluster's broker config as server.properties (Kafka's names, sorted: stable hashes)."""
    managed = sorted(set(spec.config) & set(MANAGED_BROKER_KEYS))
    if managed:  # the CRD's CEL rule refuses these; this holds if a CRD without the rule is installed
        raise InvalidSpecError(f"config {', '.join(managed)}: set by the operator, not in Cluster.spec.config")
    lines = ["# Written by the Tidelog operator from Cluster.spec.config; per-broker settings are arguments."]
    lines += [f"{key}={_property_value(key, spec.config[key])}" for key in sorted(spec.config)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ExternalAddress:
    """Where outside clients reach one broker: its node port (NodePort; the host is the node the
    pod runs on) or its load balancer's host (LoadBalancer; the port is EXTERNAL_PORT)."""

    node_port: int | None = None
    host: str | None = None


def external_properties(addresses: Mapping[int, ExternalAddress]) -> str:
    lines = ["# Written by the Tidelog operator: each broker's external address, from its Service."]
    for broker in sorted(addresses):
        a = addresses[broker]
        if a.node_port is not None:
            lines.append(f"broker.{broker}.port={a.node_port}")
        if a.host is not None:
            lines.append(f"broker.{broker}.host={a.host}")
    return "\n".join(lines) + "\n"


def config_map(
    ref: ClusterRef, spec: ClusterSpec, external: Mapping[int, ExternalAddress] | None = None
) -> dict[str, Any]:
    data = {PROPERTIES: server_properties(spec)}
    if spec.listeners.external is not None:
        data[EXTERNAL_PROPERTIES] = external_properties(external or {})
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": ref.metadata(ref.config_map), "data": data}


def _ms(spec: ClusterSpec, key: str, default: int) -> int:
    try:
        return int(spec.config.get(key, default))
    except ValueError:
        raise InvalidSpecError(f"config {key}={spec.config[key]!r}: not an integer") from None


def termination_grace_period_s(spec: ClusterSpec) -> int:
    """Long enough for a controlled shutdown (leaderships handed over) and the broker's own stop."""
    controlled = _ms(spec, "controlled.shutdown.timeout.ms", 30_000)
    stop = _ms(spec, "shutdown.timeout.ms", 10_000)
    return (controlled + stop) // 1000 + SHUTDOWN_MARGIN_S


def broker_args(ref: ClusterRef, spec: ClusterSpec) -> list[str]:
    """The broker's command line; ``$(VAR)`` is expanded by the kubelet from the container's env."""
    args = [
        "broker",
        "--config", f"{CONFIG_MOUNT}/{PROPERTIES}",
        "--broker-id", "$(BROKER_ID)",
        "--metadata", ref.metadata_store,
        *_listener_args(ref, spec),
        "--admin", f"0.0.0.0:{ADMIN_PORT}",
        "--data-dir", LOG_DIRS,
        "--metrics-port", str(spec.metrics.port),
        "--set", "metrics.host=0.0.0.0",
    ]  # fmt: skip
    if spec.rack:
        args += ["--rack", "$(BROKER_RACK)"]
    return args


def _listener_args(ref: ClusterRef, spec: ClusterSpec) -> list[str]:
    """One PLAINTEXT listener for in-cluster clients; with an external listener, INTERNAL (also the
    inter-broker one) and EXTERNAL, whose address per broker comes from external.properties."""
    internal = f"$(POD_NAME).{ref.headless_service}.$(POD_NAMESPACE).svc:{KAFKA_PORT}"
    ext = spec.listeners.external
    if desired_tls.secured(spec):
        return _secured_listener_args(ref, spec, internal)
    if ext is None:
        return ["--listen", f"0.0.0.0:{KAFKA_PORT}", "--advertise", internal]
    outside = _outside_address(spec)
    return [
        "--listen", f"INTERNAL://0.0.0.0:{KAFKA_PORT},EXTERNAL://0.0.0.0:{EXTERNAL_PORT}",
        "--advertise", f"INTERNAL://{internal},EXTERNAL://{outside}",
        "--set", "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
        "--set", "inter.broker.listener.name=INTERNAL",
        "--set", "config.providers=file",
        "--set", f"config.providers.file.class={FILE_PROVIDER_CLASS}",
    ]  # fmt: skip


def _outside_address(spec: ClusterSpec) -> str:
    ext = spec.listeners.external
    assert ext is not None
    values = f"${{file:{CONFIG_MOUNT}/{EXTERNAL_PROPERTIES}:broker.$(BROKER_ID)"
    return f"$(HOST_IP):{values}.port}}" if ext.type == "NodePort" else f"{values}.host}}:{EXTERNAL_PORT}"


def _secured_listener_args(ref: ClusterRef, spec: ClusterSpec, internal: str) -> list[str]:
    """INTERNAL (and EXTERNAL) with their protocols, plus REPLICATION (mutual TLS) for the brokers
    themselves (desired_tls explains why)."""
    listen, advertise = [f"INTERNAL://0.0.0.0:{KAFKA_PORT}"], [f"INTERNAL://{internal}"]
    if spec.listeners.external is not None:
        listen.append(f"EXTERNAL://0.0.0.0:{EXTERNAL_PORT}")
        advertise.append(f"EXTERNAL://{_outside_address(spec)}")
    listen.append(f"REPLICATION://0.0.0.0:{REPLICATION_PORT}")
    advertise.append(f"REPLICATION://{desired_tls.replication_address(ref)}")
    args = ["--listen", ",".join(listen), "--advertise", ",".join(advertise), *desired_tls.security_args(spec, ref)]
    if spec.listeners.external is not None:
        args += ["--set", "config.providers=file", "--set", f"config.providers.file.class={FILE_PROVIDER_CLASS}"]
    return args


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def broker_container(ref: ClusterRef, spec: ClusterSpec) -> dict[str, Any]:
    env = [
        _field_env("POD_NAME", "metadata.name"),
        _field_env("POD_NAMESPACE", "metadata.namespace"),
        _field_env("BROKER_ID", f"metadata.labels['{POD_INDEX_LABEL}']"),
    ]
    if spec.listeners.external is not None and spec.listeners.external.type == "NodePort":
        env.append(_field_env("HOST_IP", "status.hostIP"))  # the node's address: NodePort clients come there
    if spec.rack:
        # The node's topology label, copied onto the pod by the API server (PodTopologyLabelsAdmission).
        env.append(_field_env("BROKER_RACK", f"metadata.labels['{spec.rack.topology_key}']"))
    container: dict[str, Any] = {
        "name": "broker",
        "image": image(spec),
        "imagePullPolicy": spec.image_pull_policy,
        "args": broker_args(ref, spec),
        "env": env,
        "ports": [
            {"name": "kafka", "containerPort": KAFKA_PORT, "protocol": "TCP"},
            {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": spec.metrics.port, "protocol": "TCP"},
            *([{"name": "external", "containerPort": EXTERNAL_PORT, "protocol": "TCP"}]
              if spec.listeners.external else []),
            *([{"name": "replication", "containerPort": REPLICATION_PORT, "protocol": "TCP"}]
              if desired_tls.secured(spec) else []),
        ],
        # Ready = the admin API's health service says SERVING (NOT_SERVING from the start of a shutdown).
        "readinessProbe": {"grpc": {"port": ADMIN_PORT}, "periodSeconds": 5, "timeoutSeconds": 3,
                           "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": KAFKA_PORT}, "periodSeconds": 10, "timeoutSeconds": 5,
                          "failureThreshold": 6},
        "startupProbe": {"tcpSocket": {"port": KAFKA_PORT}, "periodSeconds": 10, "timeoutSeconds": 5,
                         "failureThreshold": STARTUP_PROBE_BUDGET_S // 10},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_MOUNT},
            {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, the root filesystem is read-only
        ],
    }  # fmt: skip
    if desired_tls.secured(spec):
        container["volumeMounts"] += [desired_tls.tls_mount(), desired_tls.admin_token_mount()]
    resources = {k: v for k, v in (("requests", spec.resources.requests), ("limits", spec.resources.limits)) if v}
    if resources:
        container["resources"] = copy.deepcopy(resources)
    return container


def pod_template(ref: ClusterRef, spec: ClusterSpec, certificates: str | None = None) -> dict[str, Any]:
    """The broker pod template, without the hash annotation. ``certificates``: the
    ``tidelog.dev/certificates`` annotation (which CA and broker certificates the pods must have
    started with; a change is a roll)."""
    pod_spec: dict[str, Any] = {
        "serviceAccountName": ref.service_account,
        "automountServiceAccountToken": True,  # the metadata store talks to the API server
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": termination_grace_period_s(spec),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [broker_container(ref, spec)],
        "volumes": [
            {"name": "config", "configMap": {"name": ref.config_map}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    if desired_tls.secured(spec):
        pod_spec["volumes"] += [desired_tls.tls_volume(ref), desired_tls.admin_token_volume(ref)]
    if spec.topology_spread:
        pod_spec["topologySpreadConstraints"] = [
            {
                "maxSkew": t.max_skew,
                "topologyKey": t.topology_key,
                "whenUnsatisfiable": t.when_unsatisfiable,
                "labelSelector": {"matchLabels": ref.selector_labels()},
            }
            for t in spec.topology_spread
        ]
    if spec.pod.node_selector:
        pod_spec["nodeSelector"] = dict(spec.pod.node_selector)
    if spec.pod.tolerations:
        pod_spec["tolerations"] = [
            {k: v for k, v in schema.dump(t).items() if v is not None} for t in spec.pod.tolerations
        ]
    if spec.pod.priority_class_name:
        pod_spec["priorityClassName"] = spec.pod.priority_class_name
    metadata: dict[str, Any] = {"labels": {**spec.pod.labels, **ref.labels()}}
    annotations = dict(spec.pod.annotations)
    if certificates is not None and desired_tls.secured(spec):
        annotations[desired_tls.CERTS_ANNOTATION] = certificates
    if annotations:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": pod_spec}


def template_hash(template: dict[str, Any], cm: dict[str, Any]) -> str:
    """What a broker pod must match not to need a restart: its template and its config file."""
    # Not external.properties: a scale-up adds a broker's line there, and must not roll the others.
    config = {k: v for k, v in cm["data"].items() if k != EXTERNAL_PROPERTIES}
    canonical = json.dumps({"template": template, "config": config}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def statefulset(
    ref: ClusterRef, spec: ClusterSpec, cm: dict[str, Any], replicas: int | None = None, certificates: str | None = None
) -> dict[str, Any]:
    """The brokers. ``replicas`` overrides ``spec.replicas`` (a scale-down keeps the old count until
    the brokers being removed are drained)."""
    template = pod_template(ref, spec, certificates)
    digest = template_hash(template, cm)
    template["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
    claim_policy = "Delete" if spec.storage.delete_claim else "Retain"
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.storage.size}},
    }
    if spec.storage.storage_class_name:
        claim_spec["storageClassName"] = spec.storage.storage_class_name
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": ref.metadata(ref.statefulset, annotations={HASH_ANNOTATION: digest}),
        "spec": {
            "serviceName": ref.headless_service,
            "replicas": spec.replicas if replicas is None else replicas,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": claim_policy, "whenScaled": claim_policy},
            "selector": {"matchLabels": ref.selector_labels()},
            "template": template,
            "volumeClaimTemplates": [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data", "labels": ref.labels()},
                    "spec": claim_spec,
                }
            ],
        },
    }


def desired_objects(
    ref: ClusterRef,
    spec: ClusterSpec,
    replicas: int | None = None,
    external: Mapping[int, ExternalAddress] | None = None,
    certificates: str | None = None,
) -> list[dict[str, Any]]:
    """Everything the Cluster owns, in a safe order to apply (identity and config before the pods).
    ``external``: the brokers' external addresses known so far (read back from their Services);
    ``certificates``: the pods' certificates annotation (secured listeners; the Secrets themselves
    are made by ``certificates.reconcile_certificates`` before this is applied)."""
    desired_tls.validate(spec)
    cm = config_map(ref, spec, external)
    brokers = spec.replicas if replicas is None else replicas
    return [
        *rbac_objects(ref),
        cm,
        *services(ref, spec, brokers),
        pod_disruption_budget(ref),
        statefulset(ref, spec, cm, replicas, certificates),
    ]
