"""FindCoordinator (10), ListGroups (16), DescribeGroups (15), DeleteGroups (42). On a lone broker
this broker coordinates every group; in a cluster the leader of the group's ``__consumer_offsets``
partition does. Transaction coordinators are refused (no transactions yet)."""

from __future__ import annotations

from typing import Any

from tidelog.broker.api.context import GROUP_AUTHORIZATION_FAILED, BrokerContext, Outcome, Reply
from tidelog.broker.groups.codes import NOT_COORDINATOR
from tidelog.broker.groups.group import State
from tidelog.broker.groups.offsets_store import OFFSETS_TOPIC
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.errors import KafkaError
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import OPERATIONS, Operation, ResourceType

GROUP_KEY, TRANSACTION_KEY = 0, 1
INVALID_REQUEST = 42


def _reply(api_key: int, version: int, **fields: object) -> Reply:
    return Reply.of(messages.encode_response(messages.build(messages.response_type(api_key, version), **fields)))


def find_coordinator(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    r = messages.decode_request(10, version, body)
    key_type = int(messages.field_or(r, "key_type", GROUP_KEY))
    if key_type == GROUP_KEY:
        keys = list(r.coordinator_keys) if version >= 4 else [r.key]
        found = [
            _coordinator_of(ctx, k)
            if ctx.allowed_group(Operation.DESCRIBE, k)
            else dict(
                node_id=-1,
                host="",
                port=-1,
                error_code=GROUP_AUTHORIZATION_FAILED,
                error_message=f"{ctx.principal} may not describe group {k}",
            )
            for k in keys
        ]
        if version >= 4:
            coordinators = [dict(key=k, **f) for k, f in zip(keys, found, strict=True)]
            return _reply(10, version, throttle_time=0, coordinators=coordinators)
        return _reply(10, version, throttle_time=0, **found[0])
    error, message, node, host, port = INVALID_REQUEST, "transactions are not supported yet", -1, "", -1
    if version >= 4:
        coordinators = [
            dict(key=k, node_id=node, host=host, port=port, error_code=error, error_message=message)
            for k in r.coordinator_keys
        ]
        return _reply(10, version, throttle_time=0, coordinators=coordinators)
    return _reply(
        10, version, throttle_time=0, error_code=error, error_message=message, node_id=node, host=host, port=port
    )


def _coordinator_of(ctx: BrokerContext, key: str) -> dict[str, Any]:
    """The broker leading the group's ``__consumer_offsets`` partition (this one, when alone)."""
    s = ctx.settings
    try:
        partition = ctx.groups.store.partition_of(key)
    except KafkaError as exc:
        return dict(node_id=-1, host="", port=-1, error_code=exc.error_code, error_message=str(exc))
    meta = ctx.cluster
    if meta is None:
        return dict(node_id=s.node_id, host=s.host, port=s.port, error_code=0, error_message=None)
    topic = meta.topics.get(OFFSETS_TOPIC)
    leader = topic.partitions[partition].leader if topic is not None and partition < len(topic.partitions) else -1
    broker = meta.brokers.get(leader)
    endpoint = broker.endpoint(s.listener) if broker is not None else None
    if broker is None or endpoint is None:
        why = "the coordinator is not available" if broker is None else f"the coordinator has no listener {s.listener}"
        return dict(node_id=-1, host="", port=-1, error_code=15, error_message=why)
    return dict(node_id=broker.broker_id, host=endpoint[0], port=endpoint[1], error_code=0, error_message=None)


def list_groups(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    r = messages.decode_request(16, version, body)
    states = {s.lower() for s in (messages.field_or(r, "states_filter", ()) or ())}
    everything = ctx.allowed_cluster(Operation.DESCRIBE)  # else only the groups it may describe
    groups = [
        dict(group_id=g.group_id, protocol_type=g.protocol_type or "", group_state=g.state.value, group_type="classic")
        for g in ctx.groups.groups.values()
        if g.state != State.DEAD
        and (not states or g.state.value.lower() in states)
        and (everything or ctx.allowed_group(Operation.DESCRIBE, g.group_id))
    ]
    return _reply(16, version, throttle_time=0, error_code=0, groups=groups)


def describe_groups(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    r = messages.decode_request(15, version, body)
    described: list[dict[str, Any]] = []
    with_operations = bool(messages.field_or(r, "include_authorized_operations", False))
    for group_id in r.groups:
        g = ctx.groups.groups.get(group_id)
        allowed = ctx.allowed_group(Operation.DESCRIBE, group_id)
        if not allowed or not ctx.groups.owns(group_id):
            described.append(
                dict(
                    error_code=NOT_COORDINATOR if allowed else GROUP_AUTHORIZATION_FAILED,
                    group_id=group_id,
                    group_state="",
                    protocol_type="",
                    protocol_data="",
                    members=[],
                    authorized_operations=-(2**31),
                )
            )
            continue
        if g is None:
            described.append(
                dict(
                    error_code=0,
                    group_id=group_id,
                    group_state="Dead",
                    protocol_type="",
                    protocol_data="",
                    members=[],
                    authorized_operations=-(2**31),
                )
            )
            continue
        protocol = g.protocol_name or ""
        members = [
            dict(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=m.metadata_for(protocol) if g.state == State.STABLE else b"",
                member_assignment=m.assignment if g.state == State.STABLE else b"",
            )
            for m in g.members.values()
        ]
        described.append(
            dict(
                error_code=0,
                group_id=group_id,
                group_state=g.state.value,
                protocol_type=g.protocol_type or "",
                protocol_data=protocol,
                members=members,
                authorized_operations=_operations(ctx, group_id) if with_operations else -(2**31),
            )
        )
    return _reply(15, version, throttle_time=0, groups=described)


def _operations(ctx: BrokerContext, group_id: str) -> int:
    if ctx.authorizer is None:
        return sum(1 << int(op) for op in OPERATIONS[ResourceType.GROUP])
    return ctx.authorizer.operations(ctx.principal, ctx.client_host, ResourceType.GROUP, group_id)


def delete_groups(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    r = messages.decode_request(42, version, body)
    names = list(r.groups_names)
    denied = [g for g in names if not ctx.allowed_group(Operation.DELETE, g)]
    results = ctx.groups.delete_groups([g for g in names if g not in denied])
    results.update(dict.fromkeys(denied, GROUP_AUTHORIZATION_FAILED))
    return _reply(42, version, throttle_time=0, results=[dict(group_id=g, error_code=c) for g, c in results.items()])
