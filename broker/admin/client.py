"""``AdminClient``: the async client of the control-plane API, used by the CLI and the operator.

Neighbours: ``pb`` (the generated stub), ``service`` (the protobuf <-> model converters and the
error metadata keys, shared so both ends agree), ``model`` (what every call returns).

It speaks in ``model`` dataclasses and raises what the server raised: a failed call whose trailing
metadata carries ``tidelog-error-code`` becomes that ``KafkaError`` subclass (``for_code``) with the
server's message. A call that never reached the service (nothing listening, deadline passed) raises
``AdminUnavailableError``, a ``ConnectionError`` (a failed TLS handshake is one: the details say
so); a call the server refused for its token is ``AdminAuthenticationError``, a ``PermissionError``;
any other gRPC failure is UNKNOWN_SERVER_ERROR.

Protection: ``tls`` (``transport.ClientTls``: CA, client certificate for mutual TLS, server name)
and a bearer token, given as ``token`` or ``token_file`` (read again when it changes).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2

from tidelog.broker.admin import model
from tidelog.broker.admin.auth import TokenFile, bearer_metadata
from tidelog.broker.admin.pb import admin_pb2 as pb
from tidelog.broker.admin.pb import admin_pb2_grpc as pb_grpc
from tidelog.broker.admin.service import (
    ERROR_CODE_KEY,
    acl_from_pb,
    acl_to_pb,
    cluster_from_pb,
    move_to_pb,
    plan_from_pb,
    reassignment_from_pb,
    restart_check_from_pb,
    topic_from_pb,
)
from tidelog.broker.admin.transport import ClientTls
from tidelog.broker.protocol.errors import KafkaError, for_code

DEFAULT_TIMEOUT = 30.0
_UNREACHED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class AdminUnavailableError(ConnectionError):
    """The admin API could not be reached (or did not answer in time); worth retrying later."""

    def __init__(self, message: str, status: grpc.StatusCode) -> None:
        super().__init__(message)
        self.status = status


class AdminAuthenticationError(PermissionError):
    """The admin API refused the call: no token, a wrong one (UNAUTHENTICATED), or not allowed."""

    def __init__(self, message: str, status: grpc.StatusCode) -> None:
        super().__init__(message)
        self.status = status


def error_from_rpc(exc: grpc.aio.AioRpcError, target: str) -> Exception:
    """The exception a failed call stands for (see the module docstring)."""
    details = " ".join((exc.details() or "").split())  # one line, whatever grpc put in it
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_CODE_KEY and isinstance(value, str):
            try:
                code = int(value)
            except ValueError:
                break
            return for_code(code)(details)
    status = exc.code()
    if status in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return AdminAuthenticationError(f"admin API at {target}: {status.name}: {details}", status)
    if status in _UNREACHED:
        if "handshake failed" in details.lower():
            details += " (TLS: check the CA, the client certificate and key, the server name)"
        return AdminUnavailableError(f"admin API at {target}: {status.name}: {details}", status)
    return for_code(-1)(f"{status.name}: {details}")


class AdminClient:
    """One channel to a broker's admin API. Use ``async with AdminClient("host:9093") as admin:``."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        tls: ClientTls | None = None,
        token: str | None = None,
        token_file: Path | None = None,
    ) -> None:
        """``token_file`` is read now (a ``TokenFileError``, a ``ValueError``, if unusable), and
        again when it changes; PEM files of ``tls`` likewise (``AdminTlsError``)."""
        self.target = target
        self.timeout = timeout
        if token is not None and token_file is not None:
            raise ValueError("give the admin token or its file, not both")
        self._token = token
        self._token_file = TokenFile(token_file) if token_file is not None else None
        if tls is not None:
            self._channel = grpc.aio.secure_channel(target, tls.credentials(), options=tls.options())
        else:
            self._channel = grpc.aio.insecure_channel(target)
        self._stub = pb_grpc.AdminStub(self._channel)
        # grpc.health.v1.Health/Check, built here because the health stub's typing stubs lack methods
        self._health_check = self._channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    def _metadata(self) -> tuple[tuple[str, str], ...] | None:
        if self._token_file is not None:
            return bearer_metadata(self._token_file.first())
        return bearer_metadata(self._token) if self._token is not None else None

    async def _call(self, method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
        try:
            return await method(request, timeout=self.timeout, metadata=self._metadata())
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, self.target) from None

    async def health(self, service: str = "") -> str:
        """The health status name (``SERVING``, ``NOT_SERVING``, ...) of ``service`` (``""``: overall)."""
        response = await self._call(self._health_check, health_pb2.HealthCheckRequest(service=service))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    async def describe_cluster(self) -> model.ClusterDesc:
        response = await self._call(self._stub.DescribeCluster, pb.DescribeClusterRequest())
        return cluster_from_pb(response.cluster)

    async def list_topics(self) -> list[str]:
        response = await self._call(self._stub.ListTopics, pb.ListTopicsRequest())
        return list(response.names)

    async def describe_topic(self, name: str) -> model.TopicDesc:
        response = await self._call(self._stub.DescribeTopic, pb.DescribeTopicRequest(name=name))
        return topic_from_pb(response.topic)

    async def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str],
        assignment: list[list[int]] | None = None,
        validate_only: bool = False,
    ) -> model.TopicDesc:
        request = pb.CreateTopicRequest(
            name=name,
            partitions=partitions,
            replication_factor=replication_factor,
            configs=configs,
            assignment=[pb.ReplicaList(replicas=r) for r in assignment or []],
            validate_only=validate_only,
        )
        return topic_from_pb((await self._call(self._stub.CreateTopic, request)).topic)

    async def alter_topic(
        self,
        name: str,
        *,
        partitions: int | None = None,
        replication_factor: int | None = None,
        set_configs: dict[str, str] | None = None,
        delete_configs: list[str] | None = None,
    ) -> model.TopicDesc:
        request = pb.AlterTopicRequest(name=name, set_configs=set_configs or {}, delete_configs=delete_configs or [])
        if partitions is not None:
            request.partitions = partitions
        if replication_factor is not None:
            request.replication_factor = replication_factor
        return topic_from_pb((await self._call(self._stub.AlterTopic, request)).topic)

    async def delete_topic(self, name: str) -> None:
        await self._call(self._stub.DeleteTopic, pb.DeleteTopicRequest(name=name))

    async def reassign(self, moves: list[model.Move], throttle_bytes_per_s: int | None = None) -> None:
        """Start the moves; a move with ``replicas=[]`` cancels that partition's reassignment."""
        request = pb.ReassignRequest(moves=[move_to_pb(m) for m in moves])
        if throttle_bytes_per_s is not None:
            request.throttle_bytes_per_s = throttle_bytes_per_s
        await self._call(self._stub.Reassign, request)

    async def list_reassignments(self) -> list[model.ReassignmentDesc]:
        response = await self._call(self._stub.ListReassignments, pb.ListReassignmentsRequest())
        return [reassignment_from_pb(r) for r in response.reassignments]

    async def drain(self, broker_id: int) -> model.Plan:
        return plan_from_pb((await self._call(self._stub.Drain, pb.DrainRequest(broker_id=broker_id))).plan)

    async def rebalance(self) -> model.Plan:
        return plan_from_pb((await self._call(self._stub.Rebalance, pb.RebalanceRequest())).plan)

    async def can_restart(self, broker_id: int) -> model.RestartCheck:
        response = await self._call(self._stub.CanRestart, pb.CanRestartRequest(broker_id=broker_id))
        return restart_check_from_pb(response.check)

    async def set_scram_user(self, user: str, mechanism: str, password: str, iterations: int = 0) -> None:
        request = pb.SetScramUserRequest(user=user, mechanism=mechanism, password=password, iterations=iterations)
        await self._call(self._stub.SetScramUser, request)

    async def delete_scram_user(self, user: str) -> bool:
        response = await self._call(self._stub.DeleteScramUser, pb.DeleteScramUserRequest(user=user))
        return response.deleted

    async def list_scram_users(self) -> list[model.ScramUserDesc]:
        response = await self._call(self._stub.ListScramUsers, pb.ListScramUsersRequest())
        return [model.ScramUserDesc(u.name, list(u.mechanisms)) for u in response.users]

    async def set_acls(self, principal: str, acls: list[model.AclDesc]) -> tuple[int, int]:
        request = pb.SetAclsRequest(principal=principal, acls=[acl_to_pb(a) for a in acls])
        response = await self._call(self._stub.SetAcls, request)
        return response.added, response.removed

    async def list_acls(self, principal: str | None = None) -> list[model.AclDesc]:
        request = pb.ListAclsRequest(principal=principal) if principal is not None else pb.ListAclsRequest()
        response = await self._call(self._stub.ListAcls, request)
        return [acl_from_pb(a) for a in response.acls]


__all__ = [
    "AdminAuthenticationError",
    "AdminClient",
    "AdminUnavailableError",
    "ClientTls",
    "KafkaError",
    "error_from_rpc",
]
