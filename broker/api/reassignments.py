"""AlterPartitionReassignments (45) and ListPartitionReassignments (46): Kafka's own reassignment
APIs (what ``kafka-reassign-partitions.sh`` and AdminClient use), on the same catalog operation as
the gRPC admin API. A null replica list cancels a partition's reassignment; v1's
``allow_replication_factor_change=false`` refuses lists of another length. A lone broker has
nothing to reassign to: every partition is answered INVALID_REPLICA_ASSIGNMENT."""

from __future__ import annotations

from typing import Any

from tidelog.broker.api.context import CLUSTER_AUTHORIZATION_FAILED, BrokerContext, Outcome, Reply
from tidelog.broker.cluster.catalog import ClusterCatalog
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.errors import KafkaError
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation

INVALID_REPLICA_ASSIGNMENT = 39
INVALID_REPLICATION_FACTOR = 38


async def _one(
    ctx: BrokerContext, topic: str, partition: int, replicas: list[int] | None, rf_change: bool
) -> tuple[int, str | None]:
    catalog = ctx.topics
    if not isinstance(catalog, ClusterCatalog):
        return INVALID_REPLICA_ASSIGNMENT, "a lone broker has no other broker to move replicas to"
    try:
        if replicas is not None and not rf_change:
            state = ctx.cluster.topics.get(topic) if ctx.cluster is not None else None
            if state is not None and 0 <= partition < len(state.partitions):
                current = len(state.partitions[partition].target_replicas)
                if len(replicas) != current:
                    return INVALID_REPLICATION_FACTOR, f"{len(replicas)} replicas for a partition of {current}"
        await catalog.reassign({(topic, partition): list(replicas) if replicas is not None else []})
    except KafkaError as exc:
        return exc.error_code, str(exc)
    return 0, None


async def alter(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    request = messages.decode_request(45, header.api_version, body)
    rf_change = bool(messages.field_or(request, "allow_replication_factor_change", True))
    responses: list[dict[str, Any]] = []
    if not ctx.allowed_cluster(Operation.ALTER):
        response = messages.build(messages.response_type(45, header.api_version), throttle_time=0,
                                  allow_replication_factor_change=rf_change, error_code=CLUSTER_AUTHORIZATION_FAILED,
                                  error_message=f"{ctx.principal} may not ALTER the cluster", responses=[])  # fmt: skip
        return Reply.of(messages.encode_response(response))
    for t in request.topics:
        partitions = []
        for p in t.partitions:
            replicas = [int(r) for r in p.replicas] if p.replicas is not None else None
            code, message = await _one(ctx, t.name, int(p.partition_index), replicas, rf_change)
            partitions.append(dict(partition_index=p.partition_index, error_code=code, error_message=message))
        responses.append(dict(name=t.name, partitions=partitions))
    response = messages.build(
        messages.response_type(45, header.api_version),
        throttle_time=0,
        allow_replication_factor_change=rf_change,
        error_code=0,
        error_message=None,
        responses=responses,
    )
    return Reply.of(messages.encode_response(response))


def list_ongoing(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    request = messages.decode_request(46, header.api_version, body)
    wanted = {t.name: {int(i) for i in t.partition_indexes} for t in request.topics} if request.topics else None
    topics: list[dict[str, Any]] = []
    meta = ctx.cluster
    if not ctx.allowed_cluster(Operation.DESCRIBE):
        response = messages.build(messages.response_type(46, header.api_version), throttle_time=0,
                                  error_code=CLUSTER_AUTHORIZATION_FAILED,
                                  error_message=f"{ctx.principal} may not DESCRIBE the cluster", topics=[])  # fmt: skip
        return Reply.of(messages.encode_response(response))
    for name, state in sorted(meta.topics.items()) if meta is not None else []:
        if wanted is not None and name not in wanted:
            continue
        ongoing = [
            dict(
                partition_index=i,
                replicas=list(p.replicas),
                adding_replicas=list(p.adding),
                removing_replicas=list(p.removing),
            )
            for i, p in enumerate(state.partitions)
            if (p.adding or p.removing) and (wanted is None or i in wanted[name])
        ]
        if ongoing:
            topics.append(dict(name=name, partitions=ongoing))
    response = messages.build(
        messages.response_type(46, header.api_version), throttle_time=0, error_code=0, error_message=None, topics=topics
    )
    return Reply.of(messages.encode_response(response))
