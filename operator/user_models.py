"""The typed model of the ``User`` resource (``tidelog.dev/v1alpha1``), like Strimzi's KafkaUser: who
an application is to a Cluster (SCRAM-SHA-512 credentials the operator makes and keeps in a Secret)
and what it may do there (Kafka ACLs the operator keeps exactly as declared).

Job: the source of the User CRD (``crd.user_crd``) and the types ``users`` works with. Names follow
Kafka's ACL vocabulary in the casing Strimzi's users know (``topic``, ``Read``, ``prefix``...).
Quotas are not modelled: the brokers enforce none yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tidelog.operator.models import ClusterRef, Condition
from tidelog.operator.schema import Rule, field

OPERATIONS = (
    "All", "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "DescribeConfigs",
    "AlterConfigs", "IdempotentWrite",
)  # fmt: skip
USER_NAME_PATTERN = r"^[a-zA-Z0-9._@-]+$"


@dataclass(kw_only=True)
class AclResource:
    """What a rule applies to."""

    __rules__ = (
        Rule("self.type == 'cluster' || has(self.name)", "name is required for topic, group and transactionalId"),
    )

    type: Literal["topic", "group", "cluster", "transactionalId"] = field("The resource type")
    name: str | None = field(
        "The resource's name, or its prefix with patternType prefix; * for every resource of the type "
        "(not for cluster)",
        default=None,
        min_length=1,
        max_length=255,
    )
    pattern_type: Literal["literal", "prefix"] = field("literal (the name itself or *) or prefix", default="literal")


@dataclass(kw_only=True)
class AclRule:
    """One allow or deny rule: operations on a resource, from a host."""

    resource: AclResource = field("The resource")
    operations: list[str] = field(
        "Kafka operations: " + ", ".join(OPERATIONS),
        max_items=len(OPERATIONS),
        rules=(
            Rule(
                "self.all(o, o in [" + ", ".join(f"'{o}'" for o in OPERATIONS) + "])",
                "operations are " + ", ".join(OPERATIONS),
            ),
            Rule("size(self) > 0", "at least one operation"),
        ),
    )
    host: str = field("The client's IP address, or * for any", default="*", max_length=253)
    type: Literal["allow", "deny"] = field("allow or deny (a deny wins over every allow)", default="allow")


@dataclass(kw_only=True)
class Authentication:
    type: Literal["scram-sha-512", "tls"] = field(
        "scram-sha-512: the operator makes a password; tls: a client certificate signed by the cluster "
        "CA (principal User:CN=<name>,O=tidelog.dev; for listeners with authentication: tls). Either way "
        "the credentials are in a Secret named after the User"
    )


@dataclass(kw_only=True)
class Authorization:
    type: Literal["simple"] = field("simple: Kafka's ACLs", default="simple")
    acls: list[AclRule] = field("The rules; the user gets exactly these", default_factory=list, max_items=1000)


@dataclass(kw_only=True)
class UserSpec:
    """An application's identity and rights on a Cluster."""

    cluster_ref: ClusterRef = field(
        "The Cluster the user belongs to; cannot change",
        rules=(Rule("self.name == oldSelf.name", "clusterRef cannot change"),),
    )
    user_name: str | None = field(
        "The user's name in Kafka (default: metadata.name); cannot change",
        default=None,
        pattern=USER_NAME_PATTERN,
        max_length=255,
        rules=(Rule("self == oldSelf", "userName cannot change"),),
    )
    authentication: Authentication = field("How the user authenticates")
    authorization: Authorization | None = field("What the user may do (none: no ACLs at all)", default=None)


@dataclass(kw_only=True)
class UserStatus:
    """The observed state of a user, written by the operator."""

    observed_generation: int | None = field("The generation last reconciled", default=None)
    conditions: list[Condition] = field("Ready, ...", default_factory=list, list_map_keys=("type",),
                                        emit_default=False)  # fmt: skip
    user_name: str | None = field("The user's name in Kafka", default=None)
    principal: str | None = field("The principal ACLs name (User:<name>)", default=None)
    secret: str | None = field("The Secret holding the credentials", default=None)
    credentials_version: str | None = field(
        "The Secret's resourceVersion the credentials in Kafka were made from", default=None
    )
    certificate_not_after: str | None = field("tls: when the client certificate expires (RFC 3339)", default=None)
    acls: int | None = field("ACL bindings the user has", default=None)
