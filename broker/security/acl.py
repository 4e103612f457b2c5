"""Kafka's ACL model: bindings, filters, and the decision (``Authorizer.authorize``).

A binding grants or denies one principal (``User:alice``, ``User:*`` for everyone) from one host
(an IP, ``*`` for any) one operation on resources of one type whose names match a pattern: LITERAL
(the name itself, or ``*`` for every resource of the type) or PREFIXED (every name starting with
it). The codes are Kafka's (``org.apache.kafka.common.acl`` / ``resource``), so bindings cross the
wire (CreateAcls, DescribeAcls, DeleteAcls) unchanged.

The decision follows Kafka's StandardAuthorizer:
- a principal named in ``super.users`` may do anything;
- the bindings that apply are those whose pattern matches the resource, whose principal is the
  caller's or ``User:*``, whose host is the caller's or ``*``, and whose operation is the one asked,
  ``ALL``, or (for ALLOW only) one that implies it: READ, WRITE, DELETE and ALTER imply DESCRIBE,
  ALTER_CONFIGS implies DESCRIBE_CONFIGS;
- any applicable DENY wins over every ALLOW; without either, the request is refused, except that
  ``allow.everyone.if.no.acl.found=true`` admits it when no binding at all names the resource.

Decisions are cached until the bindings change: the produce and fetch paths ask once per partition of
every request, and a dictionary lookup is all they pay.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

CLUSTER_NAME = "kafka-cluster"  # the one CLUSTER resource's name, as in Kafka
WILDCARD = "*"


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class Permission(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


# ALLOW of the key grants these too (Kafka's AclEntry implied operations).
IMPLIED_BY: dict[Operation, frozenset[Operation]] = {
    Operation.DESCRIBE: frozenset({Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER}),
    Operation.DESCRIBE_CONFIGS: frozenset({Operation.ALTER_CONFIGS}),
}

# The operations each resource type knows (for authorized-operations bitfields and validation).
OPERATIONS: dict[ResourceType, tuple[Operation, ...]] = {
    ResourceType.TOPIC: (
        Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DELETE, Operation.ALTER,
        Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS,
    ),
    ResourceType.GROUP: (Operation.READ, Operation.DESCRIBE, Operation.DELETE),
    ResourceType.CLUSTER: (
        Operation.CREATE, Operation.CLUSTER_ACTION, Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS,
        Operation.IDEMPOTENT_WRITE, Operation.ALTER, Operation.DESCRIBE,
    ),
    ResourceType.TRANSACTIONAL_ID: (Operation.DESCRIBE, Operation.WRITE),
    ResourceType.DELEGATION_TOKEN: (Operation.DESCRIBE,),
    ResourceType.USER: (Operation.CREATE_TOKENS, Operation.DESCRIBE_TOKENS),
}  # fmt: skip


class InvalidAclError(ValueError):
    """A binding that cannot be stored (Kafka answers INVALID_REQUEST with this message)."""


@dataclass(frozen=True, slots=True)
class AclBinding:
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: Operation
    permission: Permission

    def validate(self) -> None:
        """Refuse what Kafka refuses: wildcards in the resource, pattern, operation or permission, a
        principal without ``Type:``, an empty name, a cluster not named ``kafka-cluster``."""
        if self.resource_type in (ResourceType.ANY, ResourceType.UNKNOWN):
            raise InvalidAclError(f"resource type {self.resource_type.name} cannot be stored")
        if self.pattern_type not in (PatternType.LITERAL, PatternType.PREFIXED):
            raise InvalidAclError(f"pattern type {self.pattern_type.name}: LITERAL or PREFIXED only")
        if self.operation in (Operation.ANY, Operation.UNKNOWN):
            raise InvalidAclError(f"operation {self.operation.name} cannot be stored")
        if self.operation is not Operation.ALL and self.operation not in OPERATIONS.get(self.resource_type, ()):
            raise InvalidAclError(f"operation {self.operation.name} does not apply to {self.resource_type.name}")
        if self.permission not in (Permission.ALLOW, Permission.DENY):
            raise InvalidAclError(f"permission {self.permission.name}: ALLOW or DENY only")
        kind, sep, name = self.principal.partition(":")
        if not sep or not kind or not name:
            raise InvalidAclError(f"principal {self.principal!r} is not of the form Type:name (e.g. User:alice)")
        if not self.resource_name:
            raise InvalidAclError("the resource name is empty")
        if not self.host:
            raise InvalidAclError("the host is empty (use * for any host)")
        if self.resource_type is ResourceType.CLUSTER and self.resource_name != CLUSTER_NAME:
            raise InvalidAclError(f"the cluster resource is named {CLUSTER_NAME}, not {self.resource_name!r}")
        if self.pattern_type is PatternType.PREFIXED and self.resource_name == WILDCARD:
            raise InvalidAclError("a PREFIXED pattern cannot be the wildcard *")

    def to_json(self) -> dict[str, object]:
        return {
            "resourceType": self.resource_type.name,
            "name": self.resource_name,
            "patternType": self.pattern_type.name,
            "principal": self.principal,
            "host": self.host,
            "operation": self.operation.name,
            "permission": self.permission.name,
        }

    @classmethod
    def from_json(cls, raw: dict[str, str]) -> AclBinding:
        return cls(
            ResourceType[raw["resourceType"]],
            raw["name"],
            PatternType[raw["patternType"]],
            raw["principal"],
            raw["host"],
            Operation[raw["operation"]],
            Permission[raw["permission"]],
        )

    def __str__(self) -> str:
        return (
            f"{self.permission.name} {self.principal} from {self.host} {self.operation.name} on "
            f"{self.resource_type.name}:{self.pattern_type.name}:{self.resource_name}"
        )


@dataclass(frozen=True, slots=True)
class AclFilter:
    """What DescribeAcls and DeleteAcls select: ANY / None match everything; pattern MATCH selects
    the bindings that would apply to the named resource (literal, wildcard and prefixes)."""

    resource_type: ResourceType = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: Operation = Operation.ANY
    permission: Permission = Permission.ANY

    def validate(self) -> None:
        for value, enum_type in (
            (self.resource_type, ResourceType),
            (self.pattern_type, PatternType),
            (self.operation, Operation),
            (self.permission, Permission),
        ):
            if value == 0:
                raise InvalidAclError(f"a filter with {enum_type.__name__} UNKNOWN matches nothing")

    def matches(self, b: AclBinding) -> bool:
        if self.resource_type is not ResourceType.ANY and b.resource_type is not self.resource_type:
            return False
        if self.principal is not None and b.principal != self.principal:
            return False
        if self.host is not None and b.host != self.host:
            return False
        if self.operation is not Operation.ANY and b.operation is not self.operation:
            return False
        if self.permission is not Permission.ANY and b.permission is not self.permission:
            return False
        name, pattern = self.resource_name, self.pattern_type
        if pattern is PatternType.MATCH:
            if name is None:
                return True
            if b.pattern_type is PatternType.LITERAL:
                return b.resource_name in (name, WILDCARD)
            return name.startswith(b.resource_name)
        if pattern is not PatternType.ANY and b.pattern_type is not pattern:
            return False
        return name is None or b.resource_name == name


def parse_principals(value: str) -> frozenset[str]:
    """``super.users``: ``User:a;User:b`` (Kafka's separator is ``;``)."""
    principals = frozenset(p.strip() for p in value.split(";") if p.strip())
    for p in principals:
        if ":" not in p:
            raise ValueError(f"super.users: {p!r} is not of the form User:name")
    return principals


class Authorizer:
    """Decides requests from the current bindings (``update`` replaces them all)."""

    def __init__(self, super_users: Iterable[str] = (), allow_if_no_acl: bool = False) -> None:
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self.bindings: frozenset[AclBinding] = frozenset()
        # (type, pattern) -> name -> bindings; the LITERAL map also holds the wildcard "*"
        self._literal: dict[ResourceType, dict[str, list[AclBinding]]] = {}
        self._prefixed: dict[ResourceType, dict[str, list[AclBinding]]] = {}
        self._cache: dict[tuple[str, str, Operation, ResourceType, str], bool] = {}

    def update(self, bindings: Iterable[AclBinding]) -> None:
        literal: dict[ResourceType, dict[str, list[AclBinding]]] = {}
        prefixed: dict[ResourceType, dict[str, list[AclBinding]]] = {}
        bound = frozenset(bindings)
        for b in bound:
            by_name = (literal if b.pattern_type is PatternType.LITERAL else prefixed).setdefault(b.resource_type, {})
            by_name.setdefault(b.resource_name, []).append(b)
        self.bindings, self._literal, self._prefixed = bound, literal, prefixed
        self._cache = {}

    def _applicable(self, resource_type: ResourceType, name: str) -> list[AclBinding]:
        found: list[AclBinding] = []
        literal = self._literal.get(resource_type)
        if literal:
            found += literal.get(name, ())
            if name != WILDCARD:
                found += literal.get(WILDCARD, ())
        prefixed = self._prefixed.get(resource_type)
        if prefixed:
            for prefix, bindings in prefixed.items():
                if name.startswith(prefix):
                    found += bindings
        return found

    def authorize(
        self, principal: str, host: str, operation: Operation, resource_type: ResourceType, name: str
    ) -> bool:
        key = (principal, host, operation, resource_type, name)
        decision = self._cache.get(key)
        if decision is None:
            decision = self._decide(principal, host, operation, resource_type, name)
            if len(self._cache) > 100_000:
                self._cache = {}
            self._cache[key] = decision
        return decision

    def _decide(self, principal: str, host: str, operation: Operation, resource_type: ResourceType, name: str) -> bool:
        if principal in self.super_users:
            return True
        found = self._applicable(resource_type, name)
        if not found:
            return self.allow_if_no_acl
        implied = IMPLIED_BY.get(operation, frozenset())
        allowed = False
        for b in found:
            if b.principal not in (principal, "User:*"):
                continue
            if b.host not in (WILDCARD, host):
                continue
            if b.permission is Permission.DENY:
                if b.operation is operation or b.operation is Operation.ALL:
                    return False
            elif b.operation is operation or b.operation is Operation.ALL or b.operation in implied:
                allowed = True
        return allowed

    def authorize_any(self, principal: str, host: str, operation: Operation, resource_type: ResourceType) -> bool:
        """May ``principal`` do ``operation`` on at least one resource of the type? (Kafka's
        authorizeByResourceType: how an idempotent producer without IDEMPOTENT_WRITE on the cluster
        is admitted when it may write some topic.) An ALLOW counts unless a DENY covers every name
        it covers: the same literal name, a prefix of its pattern, or the wildcard."""
        if principal in self.super_users:
            return True
        mine = [
            b
            for b in self.bindings
            if b.resource_type is resource_type
            and b.principal in (principal, "User:*")
            and b.host in (WILDCARD, host)
            and (b.operation is operation or b.operation is Operation.ALL)
        ]
        denies = [b for b in mine if b.permission is Permission.DENY]
        if any(_covers_everything(d) for d in denies):
            return False
        for allow in (b for b in mine if b.permission is Permission.ALLOW):
            if not any(_covers(d, allow) for d in denies):
                return True
        if self.allow_if_no_acl:
            return not any(b.resource_type is resource_type for b in self.bindings)
        return False

    def operations(self, principal: str, host: str, resource_type: ResourceType, name: str) -> int:
        """Kafka's authorized-operations bitfield (bit n set: operation n allowed)."""
        bits = 0
        for op in OPERATIONS.get(resource_type, ()):
            if self.authorize(principal, host, op, resource_type, name):
                bits |= 1 << int(op)
        return bits


def _covers_everything(deny: AclBinding) -> bool:
    return (deny.pattern_type is PatternType.LITERAL and deny.resource_name == WILDCARD) or (
        deny.pattern_type is PatternType.PREFIXED and deny.resource_name == ""
    )


def _covers(deny: AclBinding, allow: AclBinding) -> bool:
    """Does ``deny`` apply to every resource ``allow`` grants?"""
    if _covers_everything(deny):
        return True
    if deny.pattern_type is PatternType.LITERAL:
        return allow.pattern_type is PatternType.LITERAL and allow.resource_name == deny.resource_name
    return allow.resource_name.startswith(deny.resource_name)
