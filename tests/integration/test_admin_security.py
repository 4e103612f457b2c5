"""The protected control plane: mutual TLS and bearer tokens on the gRPC admin API.

First the real ``grpc.aio`` server of ``start_admin_server`` on a free loopback port (a one-method
``ClusterAdmin`` double behind it: the transport is what is tested), certificates from
``certs.make_pki`` (openssl): the right client certificate passes; no certificate, a foreign CA's
certificate and a plaintext client are refused; tokens right, wrong, missing, malformed, rotated and
removed; the health service answers without credentials. Then a real broker (a one-broker cluster:
the admin API serves cluster members) protected by both, driven by ``tidelog cluster`` with the
flags and the environment variables, and brokers refusing half a configuration at start.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from certs import Pki, make_pki
from tidelogbroker import TIDELOG, free_port
from tidelogcluster import TidelogCluster, tidelog_cluster

from tidelog.broker.admin.auth import TokenFile
from tidelog.broker.admin.client import AdminAuthenticationError, AdminClient, AdminUnavailableError, ClientTls
from tidelog.broker.admin.model import BrokerDesc, ClusterDesc
from tidelog.broker.admin.server import AdminServer, start_admin_server
from tidelog.broker.admin.transport import ServerTls
from tidelog.broker.protocol.errors import KafkaError

pytestmark = pytest.mark.timeout(120)

TOKEN = "0123456789abcdef-the-right-token"  # noqa: S105 - a test token
OTHER = "fedcba9876543210-another-token"


class OneCallAdmin:
    """``describe_cluster`` only: every test calls it (the other methods are the plain API's tests)."""

    async def describe_cluster(self) -> ClusterDesc:
        return ClusterDesc("secure-1", 1, [BrokerDesc(1, "b1", 9092, None, alive=True, state="running")], 0, 0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "admin-token"
    path.write_text(TOKEN + "\n")
    return path


async def _serve(tls: ServerTls | None = None, tokens: TokenFile | None = None) -> AdminServer:
    return await start_admin_server(OneCallAdmin(), "127.0.0.1", 0, tls=tls, tokens=tokens)  # type: ignore[arg-type]


@pytest_asyncio.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[AdminServer]:
    server = await _serve(ServerTls.from_files(pki.broker, pki.ca, require_client_auth=True))
    yield server
    await server.stop(None)


@pytest_asyncio.fixture
async def token_server(token_file: Path) -> AsyncIterator[AdminServer]:
    server = await _serve(tokens=TokenFile(token_file))
    yield server
    await server.stop(None)


async def _describe(port: int, **kwargs: Any) -> ClusterDesc:
    async with AdminClient(f"127.0.0.1:{port}", timeout=5, **kwargs) as admin:
        return await admin.describe_cluster()


async def _health(port: int, **kwargs: Any) -> str:
    async with AdminClient(f"127.0.0.1:{port}", timeout=5, **kwargs) as admin:
        return await admin.health()


# -- mutual TLS ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_mtls_admits_a_client_certificate_of_the_trusted_ca(mtls_server: AdminServer, pki: Pki) -> None:
    # a separate key file, and a keystore holding both (Kafka's PEM keystore layout)
    for tls in (ClientTls(pki.ca, pki.client_cert, pki.client_key), ClientTls(pki.ca, pki.client)):
        assert (await _describe(mtls_server.port, tls=tls)).cluster_id == "secure-1"
    named = ClientTls(pki.ca, pki.client, server_name="localhost")  # a name on the broker's certificate
    assert await _health(mtls_server.port, tls=named) == "SERVING"


@pytest.mark.asyncio
@pytest.mark.parametrize("who", ["no certificate", "foreign CA", "plaintext"])
async def test_mtls_refuses_everyone_else(mtls_server: AdminServer, pki: Pki, who: str) -> None:
    kwargs: dict[str, Any] = {
        "no certificate": {"tls": ClientTls(pki.ca)},
        "foreign CA": {"tls": ClientTls(pki.ca, pki.foreign_client_cert, pki.foreign_client_key)},
        "plaintext": {},
    }[who]
    with pytest.raises(AdminUnavailableError) as refused:
        await _describe(mtls_server.port, **kwargs)
    assert "\n" not in str(refused.value)
    with pytest.raises(AdminUnavailableError):  # TLS guards health too: nothing passes the handshake
        await _health(mtls_server.port, **kwargs)


@pytest.mark.asyncio
async def test_a_client_that_does_not_trust_the_broker_refuses_it(mtls_server: AdminServer, pki: Pki) -> None:
    with pytest.raises(AdminUnavailableError):
        await _describe(mtls_server.port, tls=ClientTls(pki.foreign_ca, pki.client))


@pytest.mark.asyncio
async def test_server_only_tls_needs_no_client_certificate(pki: Pki) -> None:
    server = await _serve(ServerTls.from_files(pki.broker, None, require_client_auth=False))
    try:
        assert (await _describe(server.port, tls=ClientTls(pki.ca))).cluster_id == "secure-1"
        with pytest.raises(AdminUnavailableError):
            await _describe(server.port)  # plaintext
    finally:
        await server.stop(None)


@pytest.mark.asyncio
async def test_a_plain_health_only_port_for_probes_that_cannot_speak_tls(pki: Pki) -> None:
    tls = ServerTls.from_files(pki.broker, pki.ca, require_client_auth=True)
    server = await start_admin_server(OneCallAdmin(), "127.0.0.1", 0, tls=tls, health_address="127.0.0.1:0")  # type: ignore[arg-type]
    try:
        assert server.health_port not in (0, server.port)
        assert await _health(server.health_port) == "SERVING"  # plaintext, no certificate
        with pytest.raises(KafkaError, match="UNIMPLEMENTED"):  # the Admin service is not there
            await _describe(server.health_port)
        await server.set_serving(False)
        assert await _health(server.health_port) == "NOT_SERVING"
    finally:
        await server.stop(None)


# -- bearer tokens ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_right_token_passes_and_health_needs_none(token_server: AdminServer, token_file: Path) -> None:
    assert (await _describe(token_server.port, token=TOKEN)).cluster_id == "secure-1"
    assert (await _describe(token_server.port, token_file=token_file)).cluster_id == "secure-1"
    assert await _health(token_server.port) == "SERVING"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "missing admin token"), (OTHER, "invalid admin token"), (TOKEN[:-1], "invalid admin token"),
     (TOKEN + "x", "invalid admin token")],
)  # fmt: skip
async def test_a_missing_or_wrong_token_is_unauthenticated(
    token_server: AdminServer, token: str | None, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(AdminAuthenticationError) as refused:
        await _describe(token_server.port, token=token)
    assert refused.value.status == grpc.StatusCode.UNAUTHENTICATED
    assert message in str(refused.value)
    assert TOKEN not in caplog.text
    assert OTHER not in caplog.text


@pytest.mark.asyncio
async def test_malformed_authorization_metadata(token_server: AdminServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{token_server.port}") as channel:
        call = channel.unary_unary("/tidelog.admin.v1.Admin/DescribeCluster")
        for value in (TOKEN, f"Basic {TOKEN}", "Bearer "):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(b"", metadata=(("authorization", value),), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "malformed" in (refused.value.details() or "")


def _write(path: Path, text: str | None) -> None:
    """Rewrite (or, with None, remove) the token file, as a Secret update does."""
    if text is None:
        path.unlink()
    else:
        path.write_text(text)


@pytest.mark.asyncio
async def test_the_token_file_is_read_again_when_it_changes(token_server: AdminServer, token_file: Path) -> None:
    _write(token_file, f"{OTHER}\n{TOKEN}\n")  # rotation: both accepted for a while
    for token in (OTHER, TOKEN):
        assert (await _describe(token_server.port, token=token)).cluster_id == "secure-1"
    _write(token_file, OTHER + "\n")
    with pytest.raises(AdminAuthenticationError):
        await _describe(token_server.port, token=TOKEN)
    _write(token_file, None)  # gone: fail closed, every call refused
    with pytest.raises(AdminAuthenticationError, match="token file is unusable"):
        await _describe(token_server.port, token=OTHER)
    assert await _health(token_server.port) == "SERVING"
    _write(token_file, OTHER + "\n")
    assert (await _describe(token_server.port, token=OTHER)).cluster_id == "secure-1"


@pytest.mark.asyncio
async def test_mtls_and_token_together(pki: Pki, token_file: Path) -> None:
    server = await _serve(ServerTls.from_files(pki.broker, pki.ca, require_client_auth=True), TokenFile(token_file))
    tls = ClientTls(pki.ca, pki.client)
    try:
        assert (await _describe(server.port, tls=tls, token=TOKEN)).cluster_id == "secure-1"
        with pytest.raises(AdminAuthenticationError):
            await _describe(server.port, tls=tls)
        with pytest.raises(AdminUnavailableError):
            await _describe(server.port, tls=ClientTls(pki.ca), token=TOKEN)
    finally:
        await server.stop(None)


# -- a real broker and the CLI ------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[tuple[TidelogCluster, Path]]:
    tmp = tmp_path_factory.mktemp("secured")
    token_file = tmp / "admin-token"
    token_file.write_text(TOKEN + "\n")
    args = [
        "--set", f"admin.ssl.keystore.location={pki.broker}",
        "--set", f"admin.ssl.truststore.location={pki.ca}",
        "--set", "admin.ssl.client.auth=required",
        "--set", f"admin.token.file={token_file}",
    ]  # fmt: skip
    with tidelog_cluster(tmp, 1, *args) as cluster:
        yield cluster, token_file


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TIDELOG), "cluster", *args], capture_output=True, text=True, timeout=60, check=False,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TIDELOG_ADMIN")}, **(env or {})},
    )  # fmt: skip


def test_the_cli_with_flags_and_environment(secured: tuple[TidelogCluster, Path], pki: Pki) -> None:
    cluster, token_file = secured
    target = cluster.admin_target(1)
    log = cluster.brokers[1].log_text()
    assert "(mutual TLS + bearer token from" in log
    flags = ["--admin", target, "--admin-ca", str(pki.ca), "--admin-cert", str(pki.client_cert),
             "--admin-key", str(pki.client_key), "--admin-token-file", str(token_file)]  # fmt: skip
    done = _cli("describe", *flags)
    assert done.returncode == 0, done.stderr
    assert "cluster test" in done.stdout or "controller" in done.stdout
    env = {"TIDELOG_ADMIN": target, "TIDELOG_ADMIN_CA": str(pki.ca), "TIDELOG_ADMIN_CERT": str(pki.client),
           "TIDELOG_ADMIN_TOKEN_FILE": str(token_file)}  # fmt: skip
    done = _cli("topics", env=env)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("drop", "message"),
    [("--admin-token-file", "UNAUTHENTICATED: missing admin token"), ("--admin-cert", "UNAVAILABLE"),
     ("--admin-ca", "UNAVAILABLE")],
)  # fmt: skip
def test_the_cli_says_why_in_one_line(
    secured: tuple[TidelogCluster, Path], pki: Pki, tmp_path: Path, drop: str, message: str
) -> None:
    cluster, token_file = secured
    flags = {"--admin-ca": str(pki.ca), "--admin-cert": str(pki.client), "--admin-token-file": str(token_file)}
    del flags[drop]
    args = [a for pair in flags.items() for a in pair]
    done = _cli("describe", "--admin", cluster.admin_target(1), "--timeout", "5", *args)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tidelog cluster describe: ")
    assert message in lines[0]
    wrong = tmp_path / "wrong"
    wrong.write_text(OTHER)
    done = _cli("describe", "--admin", cluster.admin_target(1), "--admin-ca", str(pki.ca), "--admin-cert",
                str(pki.client), "--admin-token-file", str(wrong))  # fmt: skip
    assert done.returncode == 1
    assert "invalid admin token" in done.stderr
    assert OTHER not in cluster.brokers[1].log_text()
    assert TOKEN not in cluster.brokers[1].log_text()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["admin.ssl.truststore.location={ca}"], "but no admin.ssl.keystore.location"),
        (["admin.ssl.keystore.location={broker}", "admin.ssl.client.auth=required"], "needs a truststore"),
        (["admin.ssl.keystore.location={ca}"], "not a PEM private key"),
        (["admin.ssl.keystore.location=/no/such.pem"], "/no/such.pem: no such file"),
        (["admin.ssl.keystore.location={broker}", "admin.ssl.client.auth=requested"], "none or required"),
        (["admin.token.file=/no/such-token"], "admin.token.file: admin token file /no/such-token: no such file"),
    ],
)
def test_half_a_configuration_stops_the_broker_clearly(
    tmp_path: Path, pki: Pki, settings: list[str], message: str
) -> None:
    args = [a for s in settings for a in ("--set", s.format(ca=pki.ca, broker=pki.broker))]
    done = subprocess.run(
        [str(TIDELOG), "broker", "--data-dir", str(tmp_path / "data"), "--metrics-port", "0",
         "--listen", f"127.0.0.1:{free_port()}", "--admin", "127.0.0.1:0", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
