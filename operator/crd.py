"""The CustomResourceDefinitions of ``Cluster`` and ``Topic``, built from the models.

Job: one function per CRD returning the object as a dict (what ``crdgen`` writes to ``crds/`` and
what the operator can apply itself on start, since ``helm upgrade`` never updates a chart's
``crds/``). Versions: ``v1alpha1`` is served and stored; a later version is added here as another
entry of ``versions`` with the same schema shape (no conversion webhook while the shapes agree).
"""

from __future__ import annotations

from typing import Any

from tidelog.operator import models
from tidelog.operator.schema import object_schema

CATEGORIES = ["tidelog"]


def _ready(path: str = '.status.conditions[?(@.type=="Ready")]') -> list[dict[str, Any]]:
    return [
        {"name": "Ready", "type": "string", "jsonPath": f"{path}.status", "description": "Ready condition"},
        {"name": "Reason", "type": "string", "jsonPath": f"{path}.reason", "priority": 1},
    ]


def _version(
    spec_cls: type, status_cls: type, columns: list[dict[str, Any]], subresources: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": models.VERSION,
        "served": True,
        "storage": True,
        "subresources": subresources,
        "additionalPrinterColumns": [
            *columns,
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": object_schema(spec_cls),
                    "status": object_schema(status_cls),
                },
                "required": ["spec"],
            }
        },
    }


def _crd(kind: str, plural: str, short_names: list[str], version: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{models.GROUP}",
            "labels": {"app.kubernetes.io/name": "tidelog", "app.kubernetes.io/part-of": "tidelog"},
        },
        "spec": {
            "group": models.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": CATEGORIES,
            },
            "versions": [version],
        },
    }


def cluster_crd() -> dict[str, Any]:
    """``clusters.tidelog.dev`` (short name ``tlc``), with the scale subresource."""
    columns = [
        {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas", "description": "Brokers wanted"},
        {"name": "Ready-Brokers", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
        *_ready(),
        {"name": "Bootstrap", "type": "string", "jsonPath": ".status.bootstrapAddress", "priority": 1},
    ]
    subresources = {
        "status": {},
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.readyReplicas",
            "labelSelectorPath": ".status.labelSelector",
        },
    }
    version = _version(models.ClusterSpec, models.ClusterStatus, columns, subresources)
    return _crd("Cluster", "clusters", ["tlc"], version)


def topic_crd() -> dict[str, Any]:
    """``topics.tidelog.dev`` (short name ``tlt``)."""
    columns = [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterRef.name"},
        {"name": "Topic", "type": "string", "jsonPath": ".status.topicName"},
        {"name": "Partitions", "type": "integer", "jsonPath": ".spec.partitions"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        *_ready(),
    ]
    return _crd("Topic", "topics", ["tlt"], _version(models.TopicSpec, models.TopicStatus, columns, {"status": {}}))


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, in the order they are written."""
    return {"cluster.yaml": cluster_crd(), "topic.yaml": topic_crd()}
