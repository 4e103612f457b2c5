"""The CustomResourceDefinitions of ``Cluster``, ``Topic`` and ``User``, built from the models.

Job: one function per CRD returning the object as a dict (what ``crdgen`` writes to ``crds/`` and
what the operator can apply itself on start, since ``helm upgrade`` never updates a chart's
``crds/``). Versions: ``SERVED`` lists the API versions served, ``STORAGE`` the one etcd keeps;
all share one schema, so the API server converts between them by relabelling (conversion
strategy None, no webhook while the shapes agree). Moving on is: add the new version to
``SERVED``, release; make it ``STORAGE``, release; drop the old one from ``SERVED`` only once every
stored object was rewritten and ``status.storedVersions`` no longer names it.
e2e/tests/test_crds.py walks that path on a real API server with a made-up next version.
"""

from __future__ import annotations

import copy
from typing import Any

from tidelog.operator import models, user_models
from tidelog.operator.schema import object_schema

CATEGORIES = ["tidelog"]
SERVED: tuple[str, ...] = (models.VERSION,)
STORAGE = models.VERSION


def _ready(path: str = '.status.conditions[?(@.type=="Ready")]') -> list[dict[str, Any]]:
    return [
        {"name": "Ready", "type": "string", "jsonPath": f"{path}.status", "description": "Ready condition"},
        {"name": "Reason", "type": "string", "jsonPath": f"{path}.reason", "priority": 1},
    ]


def _version(
    spec_cls: type, status_cls: type, columns: list[dict[str, Any]], subresources: dict[str, Any]
) -> dict[str, Any]:
    """One version's entry (``name`` and ``storage`` filled in by ``_crd``)."""
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


def _crd(
    kind: str,
    plural: str,
    short_names: list[str],
    version: dict[str, Any],
    served: tuple[str, ...] | None = None,
    storage: str | None = None,
) -> dict[str, Any]:
    served = served or SERVED
    storage = storage or STORAGE
    if storage not in served:
        raise ValueError(f"storage version {storage} is not served ({', '.join(served)})")
    versions = [{**copy.deepcopy(version), "name": name, "storage": name == storage} for name in served]
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
            "versions": versions,
        },
    }


def cluster_crd(served: tuple[str, ...] | None = None, storage: str | None = None) -> dict[str, Any]:
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
    return _crd("Cluster", "clusters", ["tlc"], version, served, storage)


def topic_crd(served: tuple[str, ...] | None = None, storage: str | None = None) -> dict[str, Any]:
    """``topics.tidelog.dev`` (short name ``tlt``)."""
    columns = [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterRef.name"},
        {"name": "Topic", "type": "string", "jsonPath": ".status.topicName"},
        {"name": "Partitions", "type": "integer", "jsonPath": ".spec.partitions"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
        *_ready(),
    ]
    version = _version(models.TopicSpec, models.TopicStatus, columns, {"status": {}})
    return _crd("Topic", "topics", ["tlt"], version, served, storage)


def user_crd(served: tuple[str, ...] | None = None, storage: str | None = None) -> dict[str, Any]:
    """``users.tidelog.dev`` (short name ``tlu``)."""
    columns = [
        {"name": "Cluster", "type": "string", "jsonPath": ".spec.clusterRef.name"},
        {"name": "Authentication", "type": "string", "jsonPath": ".spec.authentication.type"},
        {"name": "ACLs", "type": "integer", "jsonPath": ".status.acls"},
        *_ready(),
        {"name": "Secret", "type": "string", "jsonPath": ".status.secret", "priority": 1},
    ]
    version = _version(user_models.UserSpec, user_models.UserStatus, columns, {"status": {}})
    return _crd("User", "users", ["tlu"], version, served, storage)


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, in the order they are written."""
    return {"cluster.yaml": cluster_crd(), "topic.yaml": topic_crd(), "user.yaml": user_crd()}
