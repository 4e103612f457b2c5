"""Start the control-plane gRPC server: the ``Admin`` service plus the standard health service.

Neighbours: ``service`` (the servicer registered here), ``model`` (the ``ClusterAdmin`` it delegates
to, which the broker passes in), ``client`` (the other end). The broker's lifecycle owns the returned
server: it calls ``set_serving(False)`` when it starts shutting down, then ``stop(grace)``.

Health (``grpc.health.v1.Health``): the overall service ``""`` and ``tidelog.admin.v1.Admin`` both
answer SERVING once started, NOT_SERVING after ``set_serving(False)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tidelog.broker.admin.model import ClusterAdmin
from tidelog.broker.admin.pb import admin_pb2_grpc as pb_grpc
from tidelog.broker.admin.service import AdminService

ADMIN_SERVICE_NAME = "tidelog.admin.v1.Admin"
HEALTH_SERVICES = ("", ADMIN_SERVICE_NAME)


class AdminServer(grpc.aio.Server):
    """A started ``grpc.aio.Server`` (every call delegated to it) that also knows the port it bound
    and can switch its health status."""

    def __init__(self, server: grpc.aio.Server, health: health_aio.HealthServicer, port: int) -> None:
        self._server = server
        self._health = health
        self.port = port

    async def set_serving(self, serving: bool) -> None:
        """Answer health checks with SERVING (True) or NOT_SERVING (False)."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in HEALTH_SERVICES:
            await self._health.set(name, status)

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        """Health watchers see NOT_SERVING, then in-flight calls get ``grace`` seconds to finish."""
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (grpc's signature)
        return await self._server.wait_for_termination(timeout)


async def start_admin_server(admin: ClusterAdmin, host: str = "127.0.0.1", port: int = 9093) -> AdminServer:
    """Serve ``admin`` on ``host:port`` (port 0: any free port, see ``.port``), health SERVING."""
    server = grpc.aio.server()
    pb_grpc.add_AdminServicer_to_server(AdminService(admin), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises RuntimeError("Failed to bind ...")
        raise OSError(f"admin API cannot listen on {address}: {exc}") from exc
    if bound == 0:
        raise OSError(f"admin API cannot listen on {address}")
    admin_server = AdminServer(server, health, bound)
    await admin_server.set_serving(True)
    await server.start()
    return admin_server
