"""What lets the brokers run and keeps them available: ServiceAccount, Role and RoleBinding for the
``kubernetes`` metadata store, and the PodDisruptionBudget.

Job: pure builders, used by ``desired.desired_objects``. The Role's rules are exactly those of
e2e/manifests/metadata-rbac.yaml (tests/unit/test_operator_desired.py compares them), which
e2e/tests/test_k8s_store.py proves sufficient for the store.
"""

from __future__ import annotations

from typing import Any

from tidelog.operator.names import ClusterRef

METADATA_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "delete"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
]


def rbac_objects(ref: ClusterRef) -> list[dict[str, Any]]:
    """ServiceAccount ``<cluster>-broker``, Role and RoleBinding ``<cluster>-metadata``."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": ref.metadata(ref.service_account)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": ref.metadata(ref.role),
            "rules": [{k: list(v) for k, v in rule.items()} for rule in METADATA_RULES],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": ref.metadata(ref.role),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ref.role},
            "subjects": [{"kind": "ServiceAccount", "name": ref.service_account, "namespace": ref.namespace}],
        },
    ]


def pod_disruption_budget(ref: ClusterRef) -> dict[str, Any]:
    """At most one broker voluntarily down at a time (node drains wait for the others)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": ref.metadata(ref.pdb),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": ref.selector_labels()}},
    }
