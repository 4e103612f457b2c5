"""DescribeAcls (29), CreateAcls (30), DeleteAcls (31): ACL bindings, as Kafka's ``kafka-acls`` tool
and the admin clients manage them (v1-3: with pattern types; Kafka 4 dropped v0).

Describing needs DESCRIBE on the cluster, creating and deleting ALTER (else
CLUSTER_AUTHORIZATION_FAILED); without an authorizer every call answers SECURITY_DISABLED, as Kafka
does. A binding Kafka would refuse (a wildcard operation, a principal without ``User:``, ...) gets
INVALID_REQUEST with the reason; the others in the same request are still created.
"""

from __future__ import annotations

import logging
from typing import Any

from tidelog.broker.api.context import BrokerContext, Reply
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import (
    AclBinding,
    AclFilter,
    InvalidAclError,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)

log = logging.getLogger(__name__)

CLUSTER_AUTHORIZATION_FAILED, INVALID_REQUEST, SECURITY_DISABLED = 31, 42, 54
UNKNOWN_SERVER_ERROR = -1
DISABLED = "no authorizer is configured on this broker (authorizer.class.name)"


def _enum(enum_type: Any, value: Any) -> Any:
    """A wire code as the enum (UNKNOWN for a code Kafka does not define)."""
    code = messages.as_int(value)
    try:
        return enum_type(code)
    except ValueError:
        return enum_type(0)


def _filter(f: Any) -> AclFilter:
    return AclFilter(
        _enum(ResourceType, f.resource_type_filter),
        f.resource_name_filter,
        _enum(PatternType, messages.field_or(f, "pattern_type_filter", PatternType.LITERAL)),
        f.principal_filter,
        f.host_filter,
        _enum(Operation, f.operation),
        _enum(Permission, f.permission_type),
    )


def _refusal(ctx: BrokerContext, operation: Operation) -> tuple[int, str] | None:
    if ctx.authorizer is None or ctx.acls is None:
        return SECURITY_DISABLED, DISABLED
    if not ctx.allowed_cluster(operation):
        return CLUSTER_AUTHORIZATION_FAILED, f"{ctx.principal} may not {operation.name} the cluster's ACLs"
    return None


def describe(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Reply:
    request = messages.decode_request(29, header.api_version, body)
    code, message, resources = 0, None, []
    refusal = _refusal(ctx, Operation.DESCRIBE)
    try:
        acl_filter = _filter(request)
        acl_filter.validate()
    except InvalidAclError as exc:
        refusal = refusal or (INVALID_REQUEST, str(exc))
    if refusal is not None:
        code, message = refusal
    else:
        by_pattern: dict[tuple[ResourceType, str, PatternType], list[AclBinding]] = {}
        for b in ctx.acls.bindings():
            if acl_filter.matches(b):
                by_pattern.setdefault((b.resource_type, b.resource_name, b.pattern_type), []).append(b)
        for (rtype, name, pattern), found in sorted(by_pattern.items()):
            acls = [
                dict(principal=b.principal, host=b.host, operation=int(b.operation), permission_type=int(b.permission))
                for b in sorted(found, key=lambda b: (b.principal, b.host, b.operation, b.permission))
            ]
            resources.append(dict(resource_type=int(rtype), resource_name=name, pattern_type=int(pattern), acls=acls))
    response = messages.build(messages.response_type(29, header.api_version), throttle_time=0, error_code=code,
                              error_message=message, resources=resources)  # fmt: skip
    return Reply.of(messages.encode_response(response))


async def create(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Reply:
    request = messages.decode_request(30, header.api_version, body)
    refusal = _refusal(ctx, Operation.ALTER)
    results: list[tuple[int, str | None]] = []
    valid: list[AclBinding] = []
    for c in request.creations:
        if refusal is not None:
            results.append(refusal)
            continue
        binding = AclBinding(
            _enum(ResourceType, c.resource_type),
            c.resource_name,
            _enum(PatternType, messages.field_or(c, "resource_pattern_type", PatternType.LITERAL)),
            c.principal,
            c.host,
            _enum(Operation, c.operation),
            _enum(Permission, c.permission_type),
        )
        try:
            binding.validate()
        except InvalidAclError as exc:
            results.append((INVALID_REQUEST, str(exc)))
            continue
        valid.append(binding)
        results.append((0, None))
    if valid:
        try:
            await ctx.acls.add(valid)
            log.info("%s created ACLs: %s", ctx.principal, "; ".join(map(str, valid)))
        except Exception as exc:
            log.exception("creating ACLs failed")
            results = [(UNKNOWN_SERVER_ERROR, f"storing the ACLs failed: {exc}") if r[0] == 0 else r for r in results]
    response = messages.build(
        messages.response_type(30, header.api_version),
        throttle_time=0,
        results=[dict(error_code=code, error_message=message) for code, message in results],
    )
    return Reply.of(messages.encode_response(response))


def _matching(b: AclBinding) -> dict[str, Any]:
    return dict(error_code=0, error_message=None, resource_type=int(b.resource_type), resource_name=b.resource_name,
                pattern_type=int(b.pattern_type), principal=b.principal, host=b.host, operation=int(b.operation),
                permission_type=int(b.permission))  # fmt: skip


async def delete(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Reply:
    request = messages.decode_request(31, header.api_version, body)
    refusal = _refusal(ctx, Operation.ALTER)
    answers: list[dict[str, Any] | None] = []
    filters: list[AclFilter] = []
    for f in request.filters:
        acl_filter = _filter(f)
        try:
            acl_filter.validate()
        except InvalidAclError as exc:
            answers.append(dict(error_code=INVALID_REQUEST, error_message=str(exc), matching_acls=[]))
            continue
        if refusal is not None:
            answers.append(dict(error_code=refusal[0], error_message=refusal[1], matching_acls=[]))
            continue
        answers.append(None)
        filters.append(acl_filter)
    if filters:
        try:
            removed = iter(await ctx.acls.remove(filters))
        except Exception as exc:
            log.exception("deleting ACLs failed")
            failure = dict(error_code=UNKNOWN_SERVER_ERROR, error_message=f"deleting ACLs failed: {exc}",
                           matching_acls=[])  # fmt: skip
            answers = [failure if a is None else a for a in answers]
        else:
            for i, a in enumerate(answers):
                if a is None:
                    found = next(removed)
                    if found:
                        log.info("%s deleted ACLs: %s", ctx.principal, "; ".join(map(str, found)))
                    answers[i] = dict(error_code=0, error_message=None, matching_acls=[_matching(b) for b in found])
    response = messages.build(messages.response_type(31, header.api_version), throttle_time=0,
                              filter_results=answers)  # fmt: skip
    return Reply.of(messages.encode_response(response))
