"""The grpc.aio servicer of the ``Admin`` API: decode the request, call ``ClusterAdmin``, answer.

Neighbours: ``model`` (the dataclasses and the ``ClusterAdmin`` interface it delegates to), ``pb`` (the
generated messages), ``server`` (which registers this servicer), ``client`` (which uses the converters
and error keys below for the other direction, so both ends agree in one place).

Errors are mapped here and nowhere else: a ``KafkaError`` becomes a gRPC status (``status_for``), with
the message as details and Kafka's code and name in the trailing metadata (``tidelog-error-code``,
``tidelog-error-name``), so the client can raise the same typed error. Anything unexpected is logged
with its traceback and answered INTERNAL (code -1) without its text, so nothing internal leaks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from tidelog.broker.admin import model
from tidelog.broker.admin.pb import admin_pb2 as pb
from tidelog.broker.admin.pb import admin_pb2_grpc as pb_grpc
from tidelog.broker.protocol.errors import KafkaError

log = logging.getLogger(__name__)

ERROR_CODE_KEY = "tidelog-error-code"
ERROR_NAME_KEY = "tidelog-error-name"

Context = grpc.aio.ServicerContext[Any, Any]

# Kafka error code -> gRPC status where the meaning is specific; the rest go by retriability.
_STATUS_BY_CODE: dict[int, grpc.StatusCode] = {
    -1: grpc.StatusCode.INTERNAL,  # UNKNOWN_SERVER_ERROR
    3: grpc.StatusCode.NOT_FOUND,  # UNKNOWN_TOPIC_OR_PARTITION
    17: grpc.StatusCode.INVALID_ARGUMENT,  # INVALID_TOPIC_EXCEPTION (a bad topic name)
    36: grpc.StatusCode.ALREADY_EXISTS,  # TOPIC_ALREADY_EXISTS
    37: grpc.StatusCode.INVALID_ARGUMENT,  # INVALID_PARTITIONS
    38: grpc.StatusCode.INVALID_ARGUMENT,  # INVALID_REPLICATION_FACTOR
    39: grpc.StatusCode.INVALID_ARGUMENT,  # INVALID_REPLICA_ASSIGNMENT
    40: grpc.StatusCode.INVALID_ARGUMENT,  # INVALID_CONFIG
    41: grpc.StatusCode.FAILED_PRECONDITION,  # NOT_CONTROLLER: ask the controller instead
    42: grpc.StatusCode.INVALID_ARGUMENT,  # INVALID_REQUEST
    85: grpc.StatusCode.FAILED_PRECONDITION,  # NO_REASSIGNMENT_IN_PROGRESS
}

_STATE_TO_PB = {
    "running": pb.BROKER_STATE_RUNNING,
    "shutting_down": pb.BROKER_STATE_SHUTTING_DOWN,
    "offline": pb.BROKER_STATE_OFFLINE,
}
_STATE_FROM_PB = {value: name for name, value in _STATE_TO_PB.items()}


def status_for(error: KafkaError) -> grpc.StatusCode:
    """The gRPC status a Kafka error is answered with."""
    status = _STATUS_BY_CODE.get(error.error_code)
    if status is not None:
        return status
    return grpc.StatusCode.UNAVAILABLE if error.retriable else grpc.StatusCode.FAILED_PRECONDITION


def error_detail(error: KafkaError) -> str:
    """The message a ``KafkaError`` was raised with, without the ``NAME (code):`` prefix of its str."""
    return Exception.__str__(error)


# -- model -> protobuf ---------------------------------------------------------------------------


def broker_to_pb(broker: model.BrokerDesc) -> pb.Broker:
    state = _STATE_TO_PB.get(broker.state)
    if state is None:
        raise ValueError(f"broker {broker.id} has state {broker.state!r}, not one of {model.BROKER_STATES}")
    message = pb.Broker(id=broker.id, host=broker.host, port=broker.port, alive=broker.alive, state=state)
    if broker.rack is not None:
        message.rack = broker.rack
    return message


def cluster_to_pb(cluster: model.ClusterDesc) -> pb.Cluster:
    return pb.Cluster(
        cluster_id=cluster.cluster_id,
        controller_id=cluster.controller_id,
        brokers=[broker_to_pb(b) for b in cluster.brokers],
        under_replicated=cluster.under_replicated,
        offline=cluster.offline,
    )


def partition_to_pb(p: model.PartitionDesc) -> pb.Partition:
    return pb.Partition(
        partition=p.partition,
        leader=p.leader,
        leader_epoch=p.leader_epoch,
        replicas=p.replicas,
        isr=p.isr,
        adding=p.adding,
        removing=p.removing,
    )


def topic_to_pb(topic: model.TopicDesc) -> pb.Topic:
    return pb.Topic(
        name=topic.name,
        topic_id=topic.topic_id,
        configs=topic.configs,
        partitions=[partition_to_pb(p) for p in topic.partitions],
    )


def move_to_pb(move: model.Move) -> pb.Move:
    return pb.Move(topic=move.topic, partition=move.partition, replicas=move.replicas)


def reassignment_to_pb(r: model.ReassignmentDesc) -> pb.Reassignment:
    return pb.Reassignment(
        topic=r.topic, partition=r.partition, replicas=r.replicas, adding=r.adding, removing=r.removing
    )


def plan_to_pb(plan: model.Plan) -> pb.Plan:
    return pb.Plan(moves=[move_to_pb(m) for m in plan.moves], leader_changes=plan.leader_changes)


def restart_check_to_pb(check: model.RestartCheck) -> pb.RestartCheck:
    return pb.RestartCheck(broker_id=check.broker_id, ok=check.ok, reasons=check.reasons)


# -- protobuf -> model ---------------------------------------------------------------------------


def cluster_from_pb(c: pb.Cluster) -> model.ClusterDesc:
    brokers = [
        model.BrokerDesc(
            id=b.id,
            host=b.host,
            port=b.port,
            rack=b.rack if b.HasField("rack") else None,
            alive=b.alive,
            state=_STATE_FROM_PB.get(b.state, "unknown"),
        )
        for b in c.brokers
    ]
    return model.ClusterDesc(
        cluster_id=c.cluster_id,
        controller_id=c.controller_id,
        brokers=brokers,
        under_replicated=c.under_replicated,
        offline=c.offline,
    )


def topic_from_pb(t: pb.Topic) -> model.TopicDesc:
    partitions = [
        model.PartitionDesc(
            partition=p.partition,
            leader=p.leader,
            leader_epoch=p.leader_epoch,
            replicas=list(p.replicas),
            isr=list(p.isr),
            adding=list(p.adding),
            removing=list(p.removing),
        )
        for p in t.partitions
    ]
    return model.TopicDesc(name=t.name, topic_id=t.topic_id, configs=dict(t.configs), partitions=partitions)


def move_from_pb(m: pb.Move) -> model.Move:
    return model.Move(topic=m.topic, partition=m.partition, replicas=list(m.replicas))


def reassignment_from_pb(r: pb.Reassignment) -> model.ReassignmentDesc:
    return model.ReassignmentDesc(
        topic=r.topic,
        partition=r.partition,
        replicas=list(r.replicas),
        adding=list(r.adding),
        removing=list(r.removing),
    )


def plan_from_pb(p: pb.Plan) -> model.Plan:
    return model.Plan(moves=[move_from_pb(m) for m in p.moves], leader_changes=p.leader_changes)


def restart_check_from_pb(c: pb.RestartCheck) -> model.RestartCheck:
    return model.RestartCheck(broker_id=c.broker_id, ok=c.ok, reasons=list(c.reasons))


def acl_to_pb(a: model.AclDesc) -> pb.Acl:
    return pb.Acl(resource_type=a.resource_type, resource_name=a.resource_name, pattern_type=a.pattern_type,
                  principal=a.principal, host=a.host, operation=a.operation, permission=a.permission)  # fmt: skip


def acl_from_pb(a: pb.Acl) -> model.AclDesc:
    return model.AclDesc(a.resource_type, a.resource_name, a.pattern_type, a.principal, a.host, a.operation,
                         a.permission)  # fmt: skip


# -- the servicer --------------------------------------------------------------------------------


@asynccontextmanager
async def _answering(context: Context, rpc: str) -> AsyncIterator[None]:
    """Turn what the body raises into the call's gRPC status (see the module docstring)."""
    try:
        yield
    except KafkaError as exc:
        log.debug("admin %s: %s", rpc, exc)
        metadata = ((ERROR_CODE_KEY, str(exc.error_code)), (ERROR_NAME_KEY, exc.name))
        await context.abort(status_for(exc), error_detail(exc), metadata)
    except Exception:
        log.exception("admin %s failed unexpectedly", rpc)
        metadata = ((ERROR_CODE_KEY, "-1"), (ERROR_NAME_KEY, "UNKNOWN_SERVER_ERROR"))
        await context.abort(grpc.StatusCode.INTERNAL, f"{rpc} failed on the server; see its log", metadata)


class AdminService(pb_grpc.AdminServicer):
    """Each RPC: decode, delegate to ``ClusterAdmin``, answer."""

    def __init__(self, admin: model.ClusterAdmin) -> None:
        self._admin = admin

    async def DescribeCluster(self, request: pb.DescribeClusterRequest, context: Context) -> pb.DescribeClusterResponse:
        async with _answering(context, "DescribeCluster"):
            return pb.DescribeClusterResponse(cluster=cluster_to_pb(await self._admin.describe_cluster()))

    async def ListTopics(self, request: pb.ListTopicsRequest, context: Context) -> pb.ListTopicsResponse:
        async with _answering(context, "ListTopics"):
            return pb.ListTopicsResponse(names=await self._admin.list_topics())

    async def DescribeTopic(self, request: pb.DescribeTopicRequest, context: Context) -> pb.DescribeTopicResponse:
        async with _answering(context, "DescribeTopic"):
            return pb.DescribeTopicResponse(topic=topic_to_pb(await self._admin.describe_topic(request.name)))

    async def CreateTopic(self, request: pb.CreateTopicRequest, context: Context) -> pb.CreateTopicResponse:
        async with _answering(context, "CreateTopic"):
            topic = await self._admin.create_topic(
                request.name,
                request.partitions,
                request.replication_factor,
                dict(request.configs),
                assignment=[list(r.replicas) for r in request.assignment] or None,
                validate_only=request.validate_only,
            )
            return pb.CreateTopicResponse(topic=topic_to_pb(topic))

    async def AlterTopic(self, request: pb.AlterTopicRequest, context: Context) -> pb.AlterTopicResponse:
        async with _answering(context, "AlterTopic"):
            topic = await self._admin.alter_topic(
                request.name,
                partitions=request.partitions if request.HasField("partitions") else None,
                replication_factor=request.replication_factor if request.HasField("replication_factor") else None,
                set_configs=dict(request.set_configs) or None,
                delete_configs=list(request.delete_configs) or None,
            )
            return pb.AlterTopicResponse(topic=topic_to_pb(topic))

    async def DeleteTopic(self, request: pb.DeleteTopicRequest, context: Context) -> pb.DeleteTopicResponse:
        async with _answering(context, "DeleteTopic"):
            await self._admin.delete_topic(request.name)
            return pb.DeleteTopicResponse()

    async def Reassign(self, request: pb.ReassignRequest, context: Context) -> pb.ReassignResponse:
        async with _answering(context, "Reassign"):
            throttle = request.throttle_bytes_per_s if request.HasField("throttle_bytes_per_s") else None
            await self._admin.reassign([move_from_pb(m) for m in request.moves], throttle)
            return pb.ReassignResponse()

    async def ListReassignments(
        self, request: pb.ListReassignmentsRequest, context: Context
    ) -> pb.ListReassignmentsResponse:
        async with _answering(context, "ListReassignments"):
            found = await self._admin.list_reassignments()
            return pb.ListReassignmentsResponse(reassignments=[reassignment_to_pb(r) for r in found])

    async def Drain(self, request: pb.DrainRequest, context: Context) -> pb.DrainResponse:
        async with _answering(context, "Drain"):
            return pb.DrainResponse(plan=plan_to_pb(await self._admin.drain(request.broker_id)))

    async def Rebalance(self, request: pb.RebalanceRequest, context: Context) -> pb.RebalanceResponse:
        async with _answering(context, "Rebalance"):
            return pb.RebalanceResponse(plan=plan_to_pb(await self._admin.rebalance()))

    async def CanRestart(self, request: pb.CanRestartRequest, context: Context) -> pb.CanRestartResponse:
        async with _answering(context, "CanRestart"):
            check = await self._admin.can_restart(request.broker_id)
            return pb.CanRestartResponse(check=restart_check_to_pb(check))

    async def SetScramUser(self, request: pb.SetScramUserRequest, context: Context) -> pb.SetScramUserResponse:
        async with _answering(context, "SetScramUser"):
            await self._admin.set_scram_user(request.user, request.mechanism, request.password, request.iterations)
            return pb.SetScramUserResponse()

    async def DeleteScramUser(self, request: pb.DeleteScramUserRequest, context: Context) -> pb.DeleteScramUserResponse:
        async with _answering(context, "DeleteScramUser"):
            return pb.DeleteScramUserResponse(deleted=await self._admin.delete_scram_user(request.user))

    async def ListScramUsers(self, request: pb.ListScramUsersRequest, context: Context) -> pb.ListScramUsersResponse:
        async with _answering(context, "ListScramUsers"):
            users = await self._admin.list_scram_users()
            return pb.ListScramUsersResponse(users=[pb.ScramUser(name=u.name, mechanisms=u.mechanisms) for u in users])

    async def SetAcls(self, request: pb.SetAclsRequest, context: Context) -> pb.SetAclsResponse:
        async with _answering(context, "SetAcls"):
            added, removed = await self._admin.set_acls(request.principal, [acl_from_pb(a) for a in request.acls])
            return pb.SetAclsResponse(added=added, removed=removed)

    async def ListAcls(self, request: pb.ListAclsRequest, context: Context) -> pb.ListAclsResponse:
        async with _answering(context, "ListAcls"):
            principal = request.principal if request.HasField("principal") else None
            return pb.ListAclsResponse(acls=[acl_to_pb(a) for a in await self._admin.list_acls(principal)])
