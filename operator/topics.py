"""Topic resources -> Kafka topics through the admin API (one direction: Kubernetes to Kafka).

Job: ``reconcile_topics`` runs inside a Cluster's loop, in one batch for all the Cluster's Topics
(no timer per Topic); ``delete_topic`` is the Topic finalizer's work.

- a missing topic is created; an existing one is adopted (its partitions grow, its replication
  factor changes through ``alter_topic(replication_factor=...)``, the configs the spec sets are put
  back if changed in the broker; configs the spec does not set are left alone);
- ``tidelog.dev/managed: "false"`` leaves the topic alone (and deletion keeps it);
- two Topics naming one topic: the oldest owns it, the others get ``Ready=False ResourceConflict``;
- fewer partitions than the broker has: ``Ready=False NotSupported`` (partitions never shrink).
"""

from __future__ import annotations

from typing import Any

from tidelog.broker.admin.model import ClusterAdmin, TopicDesc
from tidelog.operator import schema
from tidelog.operator.decisions import set_condition, status_patch, topic_name, topic_owners
from tidelog.operator.kube import Kube
from tidelog.operator.models import PartitionStatus, ReplicasChange, TopicSpec, TopicStatus

MANAGED_ANNOTATION = "tidelog.dev/managed"


def is_unknown_topic(exc: Exception) -> bool:
    return bool(getattr(exc, "error_code", None) == 3)  # UNKNOWN_TOPIC_OR_PARTITION


def managed(topic: dict[str, Any]) -> bool:
    annotations: dict[str, str] = topic["metadata"].get("annotations") or {}
    return annotations.get(MANAGED_ANNOTATION, "true").lower() != "false"


def _configs(spec: TopicSpec) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in spec.config.items()}


def describe_status(status: TopicStatus, desc: TopicDesc) -> None:
    status.topic_id = desc.topic_id
    status.partitions = len(desc.partitions)
    status.replicas = max((len(p.replicas) - len(p.adding) for p in desc.partitions), default=0)
    status.under_replicated = sum(1 for p in desc.partitions if len(p.isr) < len(p.replicas))
    status.offline = sum(1 for p in desc.partitions if p.leader < 0)
    status.partition_details = [
        PartitionStatus(partition=p.partition, leader=p.leader, replicas=list(p.replicas), isr=list(p.isr))
        for p in desc.partitions[:1000]
    ]


async def reconcile_topic(admin: ClusterAdmin, topic: dict[str, Any], owner_uid: str, now: str) -> TopicStatus:
    """One Topic's pass: make Kafka match its spec; the status to write."""
    meta = topic["metadata"]
    gen = meta.get("generation")
    status = schema.load(TopicStatus, topic.get("status") or {})
    name = topic_name(topic)
    status.topic_name = name

    def cond(ok: bool, reason: str, message: str) -> TopicStatus:
        status.conditions = set_condition(status.conditions, "Ready", ok, reason, message, now, gen)
        status.observed_generation = gen
        return status

    if owner_uid != meta["uid"]:
        return cond(False, "ResourceConflict", f"topic {name} is already managed by an older Topic resource")
    spec = schema.load(TopicSpec, topic["spec"])
    try:
        desc = await admin.describe_topic(name)
    except Exception as exc:
        if not is_unknown_topic(exc):
            raise
        if not managed(topic):
            return cond(False, "Unmanaged", f"topic {name} does not exist; tidelog.dev/managed is false")
        desc = await admin.create_topic(name, spec.partitions, spec.replicas, _configs(spec))
        describe_status(status, desc)
        return cond(True, "Created", f"topic {name} created")
    if not managed(topic):
        describe_status(status, desc)
        return cond(True, "Unmanaged", "tidelog.dev/managed is false: the operator leaves this topic alone")
    if len(desc.partitions) > spec.partitions:
        describe_status(status, desc)
        return cond(False, "NotSupported", f"partitions may not decrease ({len(desc.partitions)} -> {spec.partitions})")
    wanted = _configs(spec)
    drift = {k: v for k, v in wanted.items() if desc.configs.get(k) != v}
    moving = any(p.adding or p.removing for p in desc.partitions)
    rf_now = max((len(p.replicas) - len(p.adding) for p in desc.partitions), default=spec.replicas)
    if len(desc.partitions) < spec.partitions or drift:
        desc = await admin.alter_topic(
            name, partitions=spec.partitions if len(desc.partitions) < spec.partitions else None, set_configs=drift
        )
    status.replicas_change = None
    if rf_now != spec.replicas or moving:
        if not moving:
            desc = await admin.alter_topic(name, replication_factor=spec.replicas)
        status.replicas_change = ReplicasChange(
            target_replicas=spec.replicas, state="Ongoing", message=f"replication factor {rf_now} -> {spec.replicas}"
        )
    describe_status(status, desc)
    if status.replicas_change is not None:
        return cond(False, "ReplicasChanging", status.replicas_change.message or "")
    return cond(True, "Ready", f"{status.partitions} partitions, replication factor {status.replicas}")


async def reconcile_topics(kube: Kube, admin: ClusterAdmin, namespace: str, cluster: str, now: str) -> int:
    """Every Topic of the Cluster, one after the other; returns how many failed (each reports why)."""
    topics = [
        t
        for t in await kube.list("Topic", namespace)
        if (t.get("spec") or {}).get("clusterRef", {}).get("name") == cluster
        and not t["metadata"].get("deletionTimestamp")
    ]
    owners = topic_owners(topics)
    failed = 0
    for t in topics:
        meta = t["metadata"]
        try:
            status = await reconcile_topic(admin, t, owners[topic_name(t)], now)
        except Exception as exc:  # one bad topic must not stop the others
            failed += 1
            status = schema.load(TopicStatus, t.get("status") or {})
            status.conditions = set_condition(
                status.conditions, "Ready", False, "AdminError", str(exc), now, meta.get("generation")
            )
        await kube.patch_status("Topic", namespace, meta["name"], status_patch(status))
    return failed


async def delete_topic(kube: Kube, admin: ClusterAdmin | None, topic: dict[str, Any]) -> str:
    """The finalizer's work: delete the Kafka topic unless unmanaged, a conflict loser, or the
    Cluster is gone (``admin`` None). Returns what was done, for the log."""
    meta = topic["metadata"]
    name = topic_name(topic)
    if not managed(topic):
        return f"topic {name} kept (unmanaged)"
    if admin is None:
        return f"topic {name}: its Cluster is gone, nothing to delete"
    ref = (topic.get("spec") or {}).get("clusterRef", {}).get("name")
    others = [
        t
        for t in await kube.list("Topic", meta["namespace"])
        if t["metadata"]["uid"] != meta["uid"] and (t.get("spec") or {}).get("clusterRef", {}).get("name") == ref
    ]
    if topic_owners([topic, *others]).get(name) != meta["uid"]:
        return f"topic {name} kept: another Topic resource owns it"
    try:
        await admin.delete_topic(name)
    except Exception as exc:
        if is_unknown_topic(exc):
            return f"topic {name} was already gone"
        raise
    return f"topic {name} deleted"
