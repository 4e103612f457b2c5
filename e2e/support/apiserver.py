"""A throwaway control plane for tests: one etcd and one kube-apiserver on free 127.0.0.1 ports.

Job: start the binaries that ``e2e/cluster/local/build.sh`` caches (no kubelet, no controllers, no
root needed), with a fresh CA, serving certificate, admin client certificate (``system:masters``)
and service-account signing key made by ``openssl``, and the flags of ``cluster.sh``'s
``start_etcd``/``start_control_plane`` minus the node parts; stop them (only the processes it
started) and delete everything. Enough for API-level tests of clients of the API (RBAC, the
TokenRequest API and watch included). Users: ``e2e/tests/test_k8s_store.py``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (REPO / "e2e/cluster/versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def binaries() -> tuple[Path, Path]:
    """etcd and kube-apiserver from the e2e cache; fails the test, saying how to build them, if absent."""
    cache = Path(os.environ.get("TIDELOG_E2E_CACHE", "/var/cache/tidelog-e2e"))
    v = _versions()
    etcd = cache / f"etcd-{v['ETCD_VERSION']}/bin/etcd"
    apiserver = cache / f"kubernetes-{v['KUBERNETES_VERSION']}/bin/kube-apiserver"
    missing = [str(p) for p in (etcd, apiserver) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"missing {', '.join(missing)}: build them with `e2e/cluster/local/build.sh` "
            "(as root; ~15 CPU-minutes cold, 1 s when cached; TIDELOG_E2E_CACHE overrides the cache dir)"
        )
    return etcd, apiserver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """ca, apiserver (serving 127.0.0.1/localhost), admin (client, system:masters), sa key pair."""
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=d)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "2", "-subj", "/CN=tidelog-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", "ca.crt", cwd=d)  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
    for name, subj, eku, sans in (
        ("apiserver", "/CN=kube-apiserver", "serverAuth", "DNS:localhost,IP:127.0.0.1"),
        ("admin", "/O=system:masters/CN=tidelog-test-admin", "clientAuth", ""),
    ):
        _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=d)
        _openssl("req", "-new", "-key", f"{name}.key", "-subj", subj, "-out", f"{name}.csr", cwd=d)
        ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
               f"extendedKeyUsage={eku}"] + ([f"subjectAltName={sans}"] if sans else [])  # fmt: skip
        (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)  # fmt: skip


@dataclass
class ApiServer:
    """A running etcd + kube-apiserver. ``kubeconfig``: admin credentials (client certificate files)."""

    workdir: Path
    port: int
    kubeconfig: Path
    etcd_url: str

    def compact_etcd(self) -> int:
        """Compact etcd's history up to now (through etcd's JSON gateway); the revision compacted at."""
        status = self._etcd("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
        revision = int(status["header"]["revision"])
        self._etcd("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def _etcd(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(self.etcd_url + path, data=json.dumps(body).encode(), method="POST")  # noqa: S310
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (our own etcd on loopback)
            return json.loads(resp.read())

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.crt"

    def admin_ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(self.workdir / "admin.crt", self.workdir / "admin.key")
        return ctx

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, ok_conflict: bool = False) -> Any:
        """One admin request (synchronous, for set-up); its JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310 (https to our own apiserver)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.admin_ssl(), timeout=30) as resp:  # noqa: S310
                raw = resp.read() or b"{}"
                return json.loads(raw) if raw.lstrip()[:1] in (b"{", b"[") else raw.decode()
        except urllib.error.HTTPError as exc:
            if ok_conflict and exc.code == 409:
                return {}
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from exc

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _write_kubeconfig(d: Path, port: int) -> Path:
    path = d / "admin.kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {{server: "https://127.0.0.1:{port}", certificate-authority: ca.crt}}
users:
- name: admin
  user: {{client-certificate: admin.crt, client-key: admin.key}}
contexts:
- name: test
  context: {{cluster: test, user: admin}}
current-context: test
"""
    )
    return path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _start(d: Path, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    with (d / f"{name}.log").open("wb") as logf:
        return subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d)


@contextlib.contextmanager
def run_apiserver(*extra_args: str) -> Iterator[ApiServer]:
    """etcd + kube-apiserver (``extra_args`` added to its flags) for the duration of the ``with``;
    the working directory is deleted after."""
    etcd_bin, apiserver_bin = binaries()
    d = Path(tempfile.mkdtemp(prefix="tidelog-apiserver-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        make_pki(d)
        client, peer, port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{client}"
        procs.append(
            _start(
                d,
                "etcd",
                [
                    str(etcd_bin),
                    "--name",
                    "test",
                    "--data-dir",
                    str(d / "etcd"),
                    "--listen-client-urls",
                    etcd_url,
                    "--advertise-client-urls",
                    etcd_url,
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{peer}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{peer}",
                    "--initial-cluster",
                    f"test=http://127.0.0.1:{peer}",
                    "--unsafe-no-fsync",
                    "--log-level",
                    "warn",
                ],
            )
        )
        procs.append(
            _start(
                d,
                "kube-apiserver",
                [
                    str(apiserver_bin),
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    f"--secure-port={port}",
                    f"--etcd-servers={etcd_url}",
                    "--service-cluster-ip-range=10.96.0.0/16",
                    "--endpoint-reconciler-type=none",
                    "--authorization-mode=RBAC",
                    f"--client-ca-file={d / 'ca.crt'}",
                    f"--tls-cert-file={d / 'apiserver.crt'}",
                    f"--tls-private-key-file={d / 'apiserver.key'}",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                    f"--service-account-key-file={d / 'sa.pub'}",
                    f"--service-account-signing-key-file={d / 'sa.key'}",
                    f"--cert-dir={d / 'certs'}",
                    "--profiling=false",
                    *extra_args,
                ],
            )
        )
        server = ApiServer(d, port, _write_kubeconfig(d, port), etcd_url)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            for proc, name in zip(procs, ("etcd", "kube-apiserver"), strict=True):
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.returncode}:\n{server.log_tail(name)}")
            with contextlib.suppress(OSError, AssertionError):
                server.request("GET", "/readyz")
                break
            if time.monotonic() > deadline:
                pytest.fail(f"kube-apiserver not ready in {START_TIMEOUT_S}s:\n{server.log_tail('kube-apiserver')}")
            time.sleep(0.3)
        yield server
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(d, ignore_errors=True)
