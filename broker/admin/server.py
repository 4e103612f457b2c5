"""Start the control-plane gRPC server: the ``Admin`` service plus the standard health service.

Neighbours: ``service`` (the servicer registered here), ``model`` (the ``ClusterAdmin`` it delegates
to, which the broker passes in), ``client`` (the other end). The broker's lifecycle owns the returned
server: it calls ``set_serving(False)`` when it starts shutting down, then ``stop(grace)``.

Health (``grpc.health.v1.Health``): the overall service ``""`` and ``tidelog.admin.v1.Admin`` both
answer SERVING once started, NOT_SERVING after ``set_serving(False)``.

Protection (both optional, both may be on): ``tls`` serves over TLS, with client certificates
required when it names their CAs (mutual TLS, ``transport.ServerTls``); ``tokens`` requires a bearer
token on every call but the health service's (``auth.TokenInterceptor``). Without either the API is
plain gRPC, as on a laptop. ``health_address`` adds a plain-gRPC port serving the health service
only, for probes that cannot speak TLS (the kubelet's gRPC probe).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tidelog.broker.admin.auth import TokenFile, TokenInterceptor
from tidelog.broker.admin.model import ClusterAdmin
from tidelog.broker.admin.pb import admin_pb2_grpc as pb_grpc
from tidelog.broker.admin.service import AdminService
from tidelog.broker.admin.transport import ServerTls

ADMIN_SERVICE_NAME = "tidelog.admin.v1.Admin"
HEALTH_SERVICES = ("", ADMIN_SERVICE_NAME)


class AdminServer(grpc.aio.Server):
    """A started ``grpc.aio.Server`` (every call delegated to it) that also knows the port it bound
    and can switch its health status."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health: health_aio.HealthServicer,
        port: int,
        health_server: grpc.aio.Server | None = None,
        health_port: int = 0,
    ) -> None:
        self._server = server
        self._health = health
        self.port = port
        self._health_server = health_server
        self.health_port = health_port  # the health-only plain port (0: none)

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
        if self._health_server is not None:
            await self._health_server.stop(grace)
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (grpc's signature)
        return await self._server.wait_for_termination(timeout)


async def start_admin_server(
    admin: ClusterAdmin,
    host: str = "127.0.0.1",
    port: int = 9093,
    *,
    tls: ServerTls | None = None,
    tokens: TokenFile | None = None,
    health_address: str | None = None,
) -> AdminServer:
    """Serve ``admin`` on ``host:port`` (port 0: any free port, see ``.port``), health SERVING;
    over TLS with ``tls``, bearer tokens required with ``tokens``; the health service alone in
    plain gRPC on ``health_address`` (``HOST:PORT``, see ``.health_port``) if given."""
    server = grpc.aio.server(interceptors=[TokenInterceptor(tokens)] if tokens is not None else None)
    pb_grpc.add_AdminServicer_to_server(AdminService(admin), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    bound = _bind(server, address, tls)
    health_server, health_port = None, 0
    if health_address:
        health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health, health_server)
        health_port = _bind(health_server, health_address, None)
    admin_server = AdminServer(server, health, bound, health_server, health_port)
    await admin_server.set_serving(True)
    await server.start()
    if health_server is not None:
        await health_server.start()
    return admin_server


def _bind(server: grpc.aio.Server, address: str, tls: ServerTls | None) -> int:
    try:
        bound = server.add_secure_port(address, tls.credentials()) if tls else server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises RuntimeError("Failed to bind ...")
        raise OSError(f"admin API cannot listen on {address}: {exc}") from exc
    if bound == 0:
        raise OSError(f"admin API cannot listen on {address}")
    return bound
