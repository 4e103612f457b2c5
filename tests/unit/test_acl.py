"""The ACL decision (Kafka's StandardAuthorizer semantics), filters and the lone broker's ACL file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidelog.broker.security.acl import (
    CLUSTER_NAME,
    AclBinding,
    AclFilter,
    Authorizer,
    InvalidAclError,
    Operation,
    PatternType,
    Permission,
    ResourceType,
    parse_principals,
)
from tidelog.broker.security.acl_store import FileAcls

T, G, C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
LIT, PRE = PatternType.LITERAL, PatternType.PREFIXED
ALLOW, DENY = Permission.ALLOW, Permission.DENY
Op = Operation


def acl(
    rtype: ResourceType, name: str, op: Operation, perm: Permission = ALLOW, principal: str = "User:alice",
    pattern: PatternType = LIT, host: str = "*",
) -> AclBinding:  # fmt: skip
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def authorizer(*bindings: AclBinding, supers: tuple[str, ...] = (), allow_if_none: bool = False) -> Authorizer:
    a = Authorizer(supers, allow_if_none)
    a.update(bindings)
    return a


def test_nothing_is_allowed_without_a_binding_unless_configured() -> None:
    assert not authorizer().authorize("User:alice", "1.2.3.4", Op.READ, T, "orders")
    open_broker = authorizer(allow_if_none=True)
    assert open_broker.authorize("User:alice", "1.2.3.4", Op.READ, T, "orders")
    # ...but only while no binding names the resource at all
    guarded = authorizer(acl(T, "orders", Op.READ, principal="User:bob"), allow_if_none=True)
    assert not guarded.authorize("User:alice", "1.2.3.4", Op.READ, T, "orders")
    assert guarded.authorize("User:alice", "1.2.3.4", Op.READ, T, "payments")


def test_literal_prefixed_and_wildcard_patterns() -> None:
    a = authorizer(
        acl(T, "orders", Op.WRITE),
        acl(T, "logs-", Op.READ, pattern=PRE),
        acl(G, "*", Op.READ),
    )
    assert a.authorize("User:alice", "h", Op.WRITE, T, "orders")
    assert not a.authorize("User:alice", "h", Op.WRITE, T, "orders2")
    assert a.authorize("User:alice", "h", Op.READ, T, "logs-app")
    assert not a.authorize("User:alice", "h", Op.READ, T, "log")
    assert a.authorize("User:alice", "h", Op.READ, G, "any-group")
    assert not a.authorize("User:bob", "h", Op.READ, G, "any-group")


def test_deny_wins_over_allow_and_all() -> None:
    a = authorizer(
        acl(T, "*", Op.ALL),
        acl(T, "secret", Op.READ, DENY, pattern=PRE),
    )
    assert a.authorize("User:alice", "h", Op.WRITE, T, "secret-x")
    assert not a.authorize("User:alice", "h", Op.READ, T, "secret-x")
    assert a.authorize("User:alice", "h", Op.READ, T, "public")
    everyone_denied = authorizer(acl(T, "t", Op.ALL), acl(T, "t", Op.ALL, DENY, principal="User:*"))
    assert not everyone_denied.authorize("User:alice", "h", Op.DESCRIBE, T, "t")


def test_implied_operations_for_allow_only() -> None:
    a = authorizer(acl(T, "t", Op.READ), acl(T, "t", Op.ALTER_CONFIGS))
    assert a.authorize("User:alice", "h", Op.DESCRIBE, T, "t")  # READ implies DESCRIBE
    assert a.authorize("User:alice", "h", Op.DESCRIBE_CONFIGS, T, "t")
    assert not a.authorize("User:alice", "h", Op.WRITE, T, "t")
    # a DENY of READ does not deny DESCRIBE (only the exact operation or ALL)
    d = authorizer(acl(T, "t", Op.DESCRIBE), acl(T, "t", Op.READ, DENY))
    assert d.authorize("User:alice", "h", Op.DESCRIBE, T, "t")
    assert not d.authorize("User:alice", "h", Op.READ, T, "t")


def test_hosts_principals_and_super_users() -> None:
    a = authorizer(
        acl(T, "t", Op.READ, host="10.0.0.1"), acl(T, "t", Op.WRITE, principal="User:*"), supers=("User:root",)
    )
    assert a.authorize("User:alice", "10.0.0.1", Op.READ, T, "t")
    assert not a.authorize("User:alice", "10.0.0.2", Op.READ, T, "t")
    assert a.authorize("User:carol", "10.0.0.2", Op.WRITE, T, "t")
    assert a.authorize("User:root", "any", Op.ALTER, C, CLUSTER_NAME)
    assert parse_principals("User:a; User:b") == {"User:a", "User:b"}
    with pytest.raises(ValueError, match="User:name"):
        parse_principals("admin")


def test_decisions_follow_updates() -> None:
    a = authorizer(acl(T, "t", Op.READ))
    assert a.authorize("User:alice", "h", Op.READ, T, "t")  # cached
    a.update([])
    assert not a.authorize("User:alice", "h", Op.READ, T, "t")


def test_authorize_any_topic_for_idempotent_producers() -> None:
    assert authorizer(acl(T, "t", Op.WRITE)).authorize_any("User:alice", "h", Op.WRITE, T)
    assert not authorizer(acl(T, "t", Op.READ)).authorize_any("User:alice", "h", Op.WRITE, T)
    assert not authorizer(acl(T, "t", Op.WRITE), acl(T, "*", Op.WRITE, DENY)).authorize_any(
        "User:alice", "h", Op.WRITE, T
    )
    # a deny of one literal name leaves the prefixed allow useful
    assert authorizer(acl(T, "t", Op.WRITE, pattern=PRE), acl(T, "t", Op.WRITE, DENY)).authorize_any(
        "User:alice", "h", Op.WRITE, T
    )
    assert not authorizer(acl(T, "t", Op.WRITE), acl(T, "t", Op.WRITE, DENY)).authorize_any(
        "User:alice", "h", Op.WRITE, T
    )


def test_operations_bitfield() -> None:
    bits = authorizer(acl(T, "t", Op.READ)).operations("User:alice", "h", T, "t")
    assert bits == (1 << Op.READ) | (1 << Op.DESCRIBE)


@pytest.mark.parametrize(
    ("binding", "message"),
    [
        (acl(ResourceType.ANY, "t", Op.READ), "resource type ANY"),
        (acl(T, "t", Op.ANY), "operation ANY"),
        (acl(T, "t", Op.READ, Permission.ANY), "permission ANY"),
        (acl(T, "t", Op.READ, principal="alice"), "Type:name"),
        (acl(T, "", Op.READ), "empty"),
        (acl(C, "my-cluster", Op.ALTER), "kafka-cluster"),
        (acl(T, "t", Op.CLUSTER_ACTION), "does not apply"),
        (AclBinding(T, "t", PatternType.MATCH, "User:a", "*", Op.READ, ALLOW), "LITERAL or PREFIXED"),
    ],
)
def test_invalid_bindings_are_refused(binding: AclBinding, message: str) -> None:
    with pytest.raises(InvalidAclError, match=message):
        binding.validate()


def test_filters() -> None:
    bindings = [
        acl(T, "orders", Op.READ),
        acl(T, "*", Op.WRITE),
        acl(T, "ord", Op.DESCRIBE, pattern=PRE),
        acl(G, "orders", Op.READ, principal="User:bob"),
    ]
    match = AclFilter(T, "orders", PatternType.MATCH)
    assert [b for b in bindings if match.matches(b)] == bindings[:3]
    literal = AclFilter(ResourceType.ANY, "orders", PatternType.LITERAL)
    assert [b for b in bindings if literal.matches(b)] == [bindings[0], bindings[3]]
    by_principal = AclFilter(principal="User:bob")
    assert [b for b in bindings if by_principal.matches(b)] == [bindings[3]]
    assert all(AclFilter().matches(b) for b in bindings)
    with pytest.raises(InvalidAclError):
        AclFilter(ResourceType.UNKNOWN).validate()


names = st.text(alphabet="ab-", min_size=1, max_size=4)
bindings_strategy = st.lists(
    st.builds(
        AclBinding,
        st.just(T),
        names,
        st.sampled_from([LIT, PRE]),
        st.sampled_from(["User:alice", "User:*", "User:bob"]),
        st.sampled_from(["*", "h1"]),
        st.sampled_from([Op.READ, Op.WRITE, Op.ALL, Op.DESCRIBE]),
        st.sampled_from([ALLOW, DENY]),
    ),
    max_size=8,
)


@given(bindings_strategy, names, st.sampled_from([Op.READ, Op.WRITE, Op.DESCRIBE]))
def test_decision_matches_a_plain_reading_of_the_rules(bindings: list[AclBinding], name: str, op: Operation) -> None:
    """The indexed, cached decision equals a direct evaluation of Kafka's rules over all bindings."""
    a = authorizer(*bindings)

    def applies(b: AclBinding) -> bool:
        named = b.resource_name in (name, "*") if b.pattern_type is LIT else name.startswith(b.resource_name)
        return named and b.principal in ("User:alice", "User:*") and b.host in ("*", "h1")

    relevant = [b for b in bindings if applies(b)]
    implied = {Op.READ, Op.WRITE} if op is Op.DESCRIBE else set()
    denied = any(b.permission is DENY and b.operation in (op, Op.ALL) for b in relevant)
    allowed = any(b.permission is ALLOW and (b.operation in (op, Op.ALL) or b.operation in implied) for b in relevant)
    assert a.authorize("User:alice", "h1", op, T, name) == (allowed and not denied)


def test_file_acls_persist(tmp_path: Path) -> None:
    a = Authorizer()
    store = FileAcls(tmp_path, a)
    asyncio.run(store.add([acl(T, "t", Op.READ), acl(T, "t", Op.READ), acl(G, "g", Op.READ)]))
    assert len(store.bindings()) == 2
    assert a.authorize("User:alice", "h", Op.READ, T, "t")
    again = Authorizer()
    reopened = FileAcls(tmp_path, again)
    assert reopened.bindings() == store.bindings()
    assert again.authorize("User:alice", "h", Op.READ, G, "g")
    removed = asyncio.run(reopened.remove([AclFilter(G), AclFilter(T, "nothing")]))
    assert removed == [[acl(G, "g", Op.READ)], []]
    assert not again.authorize("User:alice", "h", Op.READ, G, "g")
    assert len(FileAcls(tmp_path, Authorizer()).bindings()) == 1
