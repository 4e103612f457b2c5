"""All of the operator's Kubernetes I/O (besides kopf's own watching): one small async adapter.

Job: server-side apply of desired objects under one field manager, pruning owned objects that are no
longer wanted, reading and deleting pods, StatefulSets, PVCs and the custom resources, and writing
``status`` through the status subresource. It speaks plain JSON over kopf's own HTTP stack (aiohttp)
with the credentials kopf logged in with (service account in a pod, KUBECONFIG outside), so the
``kubernetes`` client (memory, start time) is never loaded.

``Kube`` is the protocol the reconcile runbook needs; ``KubeAPI`` implements it over HTTP, and the
unit tests implement it in memory.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import aiohttp

from tidelog.operator.models import GROUP, VERSION

FIELD_MANAGER = "tidelog-operator"

# kind -> (API prefix, plural) of every kind the operator touches.
_KINDS: dict[str, tuple[str, str]] = {
    "ServiceAccount": ("api/v1", "serviceaccounts"),
    "ConfigMap": ("api/v1", "configmaps"),
    "Secret": ("api/v1", "secrets"),
    "Service": ("api/v1", "services"),
    "Pod": ("api/v1", "pods"),
    "PersistentVolumeClaim": ("api/v1", "persistentvolumeclaims"),
    "Role": ("apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets"),
    "StatefulSet": ("apis/apps/v1", "statefulsets"),
    "Cluster": (f"apis/{GROUP}/{VERSION}", "clusters"),
    "Topic": (f"apis/{GROUP}/{VERSION}", "topics"),
    "User": (f"apis/{GROUP}/{VERSION}", "users"),
    "CustomResourceDefinition": ("apis/apiextensions.k8s.io/v1", "customresourcedefinitions"),
    "Certificate": ("apis/cert-manager.io/v1", "certificates"),
}
_CLUSTER_SCOPED = {"CustomResourceDefinition"}


class KubeError(RuntimeError):
    """A Kubernetes API call failed with ``status`` (HTTP) and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def path(kind: str, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
    prefix, plural = _KINDS[kind]
    out = f"/{prefix}"
    if namespace is not None and kind not in _CLUSTER_SCOPED:
        out += f"/namespaces/{quote(namespace)}"
    out += f"/{plural}"
    if name is not None:
        out += f"/{quote(name)}"
    if sub:
        out += f"/{sub}"
    return out


class Kube(Protocol):
    """What the runbook reads and writes (``KubeAPI`` or a test fake)."""

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]: ...

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]: ...

    async def delete(self, kind: str, namespace: str, name: str) -> bool: ...

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None: ...


def ssl_context(info: Any) -> ssl.SSLContext | bool:
    """An SSL context from kopf's ``ConnectionInfo`` (CA, client certificate), or False if insecure."""
    if info.insecure:
        return False
    ctx = ssl.create_default_context(cafile=os.fspath(info.ca_path) if info.ca_path else None)
    if info.ca_data:
        data = info.ca_data if isinstance(info.ca_data, str) else info.ca_data.decode()
        ctx.load_verify_locations(cadata=data if "BEGIN" in data else base64.b64decode(data).decode())
    cert, key = info.certificate_path, info.private_key_path
    with tempfile.TemporaryDirectory() as tmp:  # ssl loads client certificates from files only
        if info.certificate_data:
            cert = os.path.join(tmp, "cert.pem")  # noqa: PTH118
            _write_pem(cert, info.certificate_data)
        if info.private_key_data:
            key = os.path.join(tmp, "key.pem")  # noqa: PTH118
            _write_pem(key, info.private_key_data)
        if cert:
            ctx.load_cert_chain(os.fspath(cert), os.fspath(key) if key else None)
    return ctx


def _write_pem(target: str, data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    if b"BEGIN" not in raw:
        raw = base64.b64decode(raw)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)


class KubeAPI:
    """``Kube`` over the API server's REST interface. Create with ``KubeAPI.connect(info)``."""

    def __init__(self, server: str, session: aiohttp.ClientSession) -> None:
        self.server = server.rstrip("/")
        self.session = session

    @classmethod
    def connect(cls, info: Any) -> KubeAPI:
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        connector = aiohttp.TCPConnector(ssl=ssl_context(info), limit=16)
        timeout = aiohttp.ClientTimeout(total=30)
        return cls(info.server, aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout))

    async def close(self) -> None:
        await self.session.close()

    async def _request(
        self, method: str, url: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any] | None:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(method, self.server + url, data=data, headers=headers) as resp:
            text = await resp.text()
            if resp.status == 404:
                return None
            if resp.status >= 400:
                try:
                    message = json.loads(text).get("message", text)
                except ValueError:
                    message = text
                raise KubeError(resp.status, f"{method} {url}: {message}")
            result: dict[str, Any] = json.loads(text) if text else {}
            return result

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply (``force``: the operator owns every field it sets)."""
        meta = obj["metadata"]
        query = urlencode({"fieldManager": FIELD_MANAGER, "force": "true"})
        url = path(obj["kind"], meta.get("namespace"), meta["name"]) + "?" + query
        result = await self._request("PATCH", url, obj, "application/apply-patch+yaml")
        if result is None:
            raise KubeError(404, f"apply {obj['kind']} {meta['name']}: not found (namespace gone?)")
        return result

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._request("GET", path(kind, namespace, name))

    async def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        url = path(kind, namespace) + ("?" + urlencode({"labelSelector": selector}) if selector else "")
        result = await self._request("GET", url)
        return list((result or {}).get("items", []))

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        """True if the object existed."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        return await self._request("DELETE", path(kind, namespace, name), body) is not None

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """A JSON merge patch of ``status`` (lists are replaced whole, None removes a key)."""
        await self._request(
            "PATCH", path(kind, namespace, name, "status"), {"status": status}, "application/merge-patch+json"
        )


async def prune(kube: Kube, namespace: str, selector: str, kind: str, keep: set[str]) -> list[str]:
    """Delete the objects of ``kind`` matching ``selector`` whose names are not in ``keep``."""
    removed = []
    for obj in await kube.list(kind, namespace, selector):
        name = obj["metadata"]["name"]
        if name not in keep and await kube.delete(kind, namespace, name):
            removed.append(name)
    return removed
