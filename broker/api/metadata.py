"""Metadata (3): brokers, cluster id, controller, and topics with their partitions (topic ids from
v10). Unknown topics are created when the client allows it and auto creation is on."""

from __future__ import annotations

import uuid
from typing import Any

from tidelog.broker.api.context import TOPIC_AUTHORIZATION_FAILED, BrokerContext, Outcome, Reply
from tidelog.broker.cluster.topics import TopicInfo
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.errors import KafkaError, UnknownTopicOrPartitionError, for_code
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import CLUSTER_NAME, OPERATIONS, Operation, ResourceType

API_KEY = 3
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
LEADER_NOT_AVAILABLE = 5
LISTENER_NOT_FOUND = 72


def _partitions(ctx: BrokerContext, info: TopicInfo) -> list[dict[str, Any]]:
    node = ctx.settings.node_id
    meta = ctx.cluster
    if meta is None:  # a lone broker leads everything at epoch 0
        return [
            dict(
                error_code=0,
                partition_index=p,
                leader_id=node,
                leader_epoch=0,
                replica_nodes=[node],
                isr_nodes=[node],
                offline_replicas=[],
            )
            for p in range(info.partitions)
        ]
    state = meta.topics.get(info.name)
    if state is None:
        return []
    listener = ctx.settings.listener
    return [
        dict(
            error_code=_leader_error(meta, p.leader, listener),
            partition_index=i,
            leader_id=p.leader,
            leader_epoch=p.leader_epoch,
            replica_nodes=list(p.replicas),
            isr_nodes=list(p.isr),
            offline_replicas=[r for r in p.replicas if r not in meta.brokers],
        )
        for i, p in enumerate(state.partitions)
    ]


def _leader_error(meta: Any, leader: int, listener: str) -> int:
    """0, LEADER_NOT_AVAILABLE (none yet), or LISTENER_NOT_FOUND: the leader is registered but has
    no listener of the name the client came in on (a broker configured differently from this one)."""
    if leader < 0:
        return LEADER_NOT_AVAILABLE
    broker = meta.brokers.get(leader)
    if broker is not None and broker.endpoint(listener) is None:
        return LISTENER_NOT_FOUND
    return 0


def _topic(ctx: BrokerContext, info: TopicInfo, operations: bool) -> dict[str, Any]:
    return dict(
        error_code=0,
        name=info.name,
        topic_id=info.topic_id,
        is_internal=info.name.startswith("__"),
        partitions=_partitions(ctx, info),
        topic_authorized_operations=_operations(ctx, ResourceType.TOPIC, info.name)
        if operations
        else AUTHORIZED_OPERATIONS_OMITTED,
    )


def cluster_operations(ctx: BrokerContext) -> int:
    return _operations(ctx, ResourceType.CLUSTER, CLUSTER_NAME)


def _operations(ctx: BrokerContext, resource_type: ResourceType, name: str) -> int:
    """Kafka's authorized-operations bitfield for this connection's principal (every operation of
    the resource type when no authorizer is on)."""
    if ctx.authorizer is None:
        return sum(1 << int(op) for op in OPERATIONS[resource_type])
    return ctx.authorizer.operations(ctx.principal, ctx.client_host, resource_type, name)


def brokers_and_controller(ctx: BrokerContext) -> tuple[list[dict[str, Any]], int]:
    s = ctx.settings
    meta = ctx.cluster
    if meta is None:
        return [dict(node_id=s.node_id, host=s.host, port=s.port, rack=s.rack)], s.node_id
    # Each broker's address on the listener this request came in on; brokers without it are left out.
    brokers = []
    for b in sorted(meta.brokers.values(), key=lambda b: b.broker_id):
        endpoint = b.endpoint(s.listener)
        if endpoint is not None:
            brokers.append(dict(node_id=b.broker_id, host=endpoint[0], port=endpoint[1], rack=b.rack))
    return brokers, meta.controller.broker_id if meta.controller is not None else -1


def _missing(name: str, error: KafkaError) -> dict[str, Any]:
    return dict(
        error_code=error.error_code,
        name=name,
        topic_id=uuid.UUID(int=0),
        is_internal=False,
        partitions=[],
        topic_authorized_operations=AUTHORIZED_OPERATIONS_OMITTED,
    )


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    request = messages.decode_request(API_KEY, version, body)
    requested = request.topics
    allow_create = bool(messages.field_or(request, "allow_auto_topic_creation", True))
    operations = bool(messages.field_or(request, "include_topic_authorized_operations", False))
    topics: list[dict[str, Any]] = []
    if requested is None or (version == 0 and not requested):  # v0: an empty list meant "all"
        # Topics the principal may not describe are left out, as if they did not exist.
        topics = [
            _topic(ctx, info, operations)
            for info in ctx.topics.topics.values()
            if ctx.allowed_topic(Operation.DESCRIBE, info.name)
        ]
    else:
        for wanted in requested:
            name = wanted.name
            if name is not None and not ctx.allowed_topic(Operation.DESCRIBE, name):
                topics.append(_missing(name, for_code(TOPIC_AUTHORIZATION_FAILED)()))
                continue
            info = ctx.topics.topics.get(name) if name is not None else None
            if info is None and name is not None and allow_create:
                try:
                    info = ctx.auto_create(name)
                except KafkaError as exc:
                    topics.append(_missing(name, exc))
                    continue
                if info is None and ctx.settings.auto_create_topics:  # being created by the cluster
                    topics.append(_missing(name, for_code(LEADER_NOT_AVAILABLE)()))
                    continue
            if info is None:
                topics.append(_missing(name or "", UnknownTopicOrPartitionError()))
            else:
                topics.append(_topic(ctx, info, operations))
    brokers, controller = brokers_and_controller(ctx)
    response = messages.build(
        messages.response_type(API_KEY, version),
        throttle_time=0,
        brokers=brokers,
        cluster_id=ctx.topics.cluster_id,
        controller_id=controller,
        topics=topics,
        cluster_authorized_operations=(
            cluster_operations(ctx)
            if messages.field_or(request, "include_cluster_authorized_operations", False)
            else AUTHORIZED_OPERATIONS_OMITTED
        ),
    )
    return Reply.of(messages.encode_response(response))
