"""A thin async REST client for the Kubernetes API, just enough for ``k8s_store``.

Job: find the API server and credentials (in-cluster service account, or a kubeconfig file), send
JSON requests (get, list with paging, create, replace, merge-patch, delete with preconditions) and
stream watches, turning transport failures into ``StoreError`` and API failures into ``ApiError``.
Neighbours: ``k8s_store`` (the only user: it knows ConfigMaps and Leases, this module knows HTTP);
``store`` (the error types).

Why not a client library: the official ``kubernetes`` client is synchronous and costs ~60 % of an
operator's memory (shared/notes/operator-lessons.md); ``kubernetes-asyncio`` is async but brings
thousands of generated model classes, ``six`` and ``python-dateutil`` for the two resource kinds
and six verbs used here, and its watch helper hides the 410/bookmark handling this store must
control itself. ``aiohttp`` (maintained, typed, the transport ``kubernetes-asyncio`` uses anyway)
plus ``PyYAML`` for kubeconfig files is smaller and keeps every request visible. Not supported:
kubeconfig ``exec``/``auth-provider`` credential plugins (use a token, a token file or a client
certificate).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tidelog.broker.cluster.store import StoreError

Json = dict[str, Any]

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_TOKEN_REREAD_S = 60.0  # bound service-account tokens rotate: re-read the file this often


class ApiError(StoreError):
    """The API server answered with an error status (``status``: HTTP code, ``reason``: Status reason)."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"kubernetes API {status} {reason}: {message}")
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class KubeConfig:
    """Where the API server is and how to authenticate to it."""

    server: str
    ssl_context: ssl.SSLContext | bool = True
    token: str | None = None
    token_file: str | None = None
    namespace: str | None = None  # the context's (or the pod's) namespace, when known


def _ssl_context(ca_file: str | None, ca_data: str | None, insecure: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file, cadata=base64.b64decode(ca_data).decode() if ca_data else None)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _load_client_cert(
    ctx: ssl.SSLContext, cert: str | None, key: str | None, cert_data: str | None, key_data: str | None
) -> None:
    if cert_data and key_data:
        # ssl can only load certificates from files: write them to a private temporary directory.
        with tempfile.TemporaryDirectory(prefix="tidelog-kube-") as tmp:
            cert_path, key_path = Path(tmp) / "client.crt", Path(tmp) / "client.key"
            cert_path.write_bytes(base64.b64decode(cert_data))
            key_path.write_bytes(base64.b64decode(key_data))
            ctx.load_cert_chain(cert_path, key_path)
    elif cert and key:
        ctx.load_cert_chain(cert, key)


def in_cluster_config() -> KubeConfig:
    """The pod's service account (``KUBERNETES_SERVICE_HOST`` and the mounted token)."""
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host:
        host = f"[{host}]"
    ns_file = SA_DIR / "namespace"
    return KubeConfig(
        server=f"https://{host}:{port}",
        ssl_context=_ssl_context(str(SA_DIR / "ca.crt"), None, insecure=False),
        token_file=str(SA_DIR / "token"),
        namespace=ns_file.read_text().strip() if ns_file.exists() else None,
    )


def kubeconfig_file_config(path: str | os.PathLike[str], context: str | None = None) -> KubeConfig:
    """The current (or named) context of a kubeconfig file; relative file paths are relative to it."""
    base = Path(path).parent
    doc: Json = yaml.safe_load(Path(path).read_text()) or {}

    def named(section: str, name: str) -> Json:
        for item in doc.get(section) or []:
            if item.get("name") == name:
                return dict(item.get(section[:-1]) or {})
        raise StoreError(f"kubeconfig {path}: no {section[:-1]} named {name!r}")

    def file(value: str | None) -> str | None:
        return str(base / value) if value else None

    ctx = named("contexts", context or doc.get("current-context") or "")
    cluster, user = named("clusters", ctx["cluster"]), named("users", ctx.get("user", ""))
    if "exec" in user or "auth-provider" in user:
        raise StoreError(f"kubeconfig {path}: exec/auth-provider credentials are not supported")
    server: str = cluster["server"]
    ssl_ctx: ssl.SSLContext | bool = True
    if server.startswith("https:"):
        ssl_ctx = _ssl_context(
            file(cluster.get("certificate-authority")),
            cluster.get("certificate-authority-data"),
            bool(cluster.get("insecure-skip-tls-verify")),
        )
        _load_client_cert(
            ssl_ctx,
            file(user.get("client-certificate")),
            file(user.get("client-key")),
            user.get("client-certificate-data"),
            user.get("client-key-data"),
        )
    return KubeConfig(
        server=server.rstrip("/"),
        ssl_context=ssl_ctx,
        token=user.get("token"),
        token_file=file(user.get("tokenFile")),
        namespace=ctx.get("namespace"),
    )


def default_config() -> KubeConfig:
    """In-cluster when running in a pod, else ``$KUBECONFIG`` (its first file), else ``~/.kube/config``."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (SA_DIR / "token").exists():
        return in_cluster_config()
    path = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
    if not Path(path).exists():
        raise StoreError(f"no Kubernetes credentials: not in a pod and no kubeconfig at {path}")
    return kubeconfig_file_config(path)


class KubeClient:
    """JSON over HTTP to one API server. ``path`` arguments start with ``/api`` or ``/apis``."""

    def __init__(self, config: KubeConfig, *, request_timeout_s: float = 10.0):
        self.config = config
        self.request_timeout_s = request_timeout_s
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = config.token
        self._token_read_at = 0.0

    async def open(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context)
            self._session = aiohttp.ClientSession(connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            # TLS connections (cut watches among them) finish closing on the loop: give them a moment
            # (aiohttp's "graceful shutdown" advice), else they are garbage-collected unclosed.
            await asyncio.sleep(0.25)

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.config.token_file and time.monotonic() - self._token_read_at > _TOKEN_REREAD_S:
            self._token = Path(self.config.token_file).read_text().strip()
            self._token_read_at = time.monotonic()
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise StoreError("kubernetes client is not open")
        return self._session

    @staticmethod
    async def _raise_for(resp: aiohttp.ClientResponse) -> None:
        if resp.status < 400:
            return
        text = await resp.text()
        try:
            status: Json = json.loads(text)
        except ValueError:
            status = {}
        raise ApiError(resp.status, str(status.get("reason", resp.reason)), str(status.get("message", text[:300])))

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Json | None = None,
        content_type: str = "application/json",
    ) -> Json:
        """One request; its JSON answer. ApiError for an error status, StoreError if unreachable."""
        data = json.dumps(body).encode() if body is not None else None
        try:
            async with self._http().request(
                method,
                self.config.server + path,
                params=params,
                data=data,
                headers=self._headers(content_type if data is not None else None),
                timeout=self._timeout,
            ) as resp:
                await self._raise_for(resp)
                result: Json = await resp.json(content_type=None)
                return result
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise StoreError(f"kubernetes API {method} {path}: {exc!r}") from exc

    async def list_all(self, path: str, label_selector: str, *, page: int = 500) -> tuple[list[Json], str]:
        """Every item of a collection (followed through ``continue`` pages) and the list's resourceVersion."""
        items: list[Json] = []
        params = {"labelSelector": label_selector, "limit": str(page)}
        while True:
            result = await self.request("GET", path, params=params)
            items.extend(result.get("items") or [])
            meta = result.get("metadata") or {}
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion", ""))
            params["continue"] = meta["continue"]

    async def watch(
        self, path: str, label_selector: str, resource_version: str, *, timeout_s: int
    ) -> AsyncIterator[Json]:
        """Watch events (``{"type", "object"}``, bookmarks included) from ``resource_version`` until the
        server ends the stream (after about ``timeout_s``). ApiError(410) when that version is too old."""
        params = {
            "watch": "1",
            "labelSelector": label_selector,
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
        }
        # No total timeout: the server closes the stream; a silent connection fails the read timeout.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_s + 30)
        try:
            async with self._http().get(
                self.config.server + path, params=params, headers=self._headers(), timeout=timeout
            ) as resp:
                await self._raise_for(resp)
                # One JSON object per line; not readline(): aiohttp caps a line at 128 KiB, objects
                # (a ConfigMap) may be up to 1 MiB.
                buffer = bytearray()
                async for chunk in resp.content.iter_any():
                    for line in take_lines(buffer, chunk):
                        if line.strip():
                            event: Json = json.loads(line)
                            yield event
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise StoreError(f"kubernetes watch {path}: {exc!r}") from exc


def take_lines(buffer: bytearray, chunk: bytes) -> list[bytes]:
    """Append ``chunk`` to ``buffer`` and cut off the complete lines (without their newline); the
    unfinished rest stays in ``buffer``. Only the new chunk is searched, so a 1 MiB line that
    arrives in many small chunks costs linear time."""
    searched = len(buffer)
    buffer += chunk
    lines = []
    end = buffer.find(b"\n", searched)
    while end >= 0:
        lines.append(bytes(buffer[:end]))
        del buffer[: end + 1]
        end = buffer.find(b"\n")
    return lines


async def sleep_backoff(attempt: int, cap_s: float = 5.0) -> None:
    """Wait before retry ``attempt`` (0, 1, ...): 0.1 s doubling up to ``cap_s``."""
    await asyncio.sleep(min(cap_s, 0.1 * 2**attempt))
