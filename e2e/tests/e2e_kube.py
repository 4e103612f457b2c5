"""Helpers for the e2e tests: kubectl through subprocess, waits with deadlines, state dumps, and a
real Prometheus on the host scraping pods (file-based discovery written from the pod list).

The suite runs on whatever cluster KUBECONFIG names (the local or kind provider). It needs only
`kubectl` (KUBECTL env var, else PATH) and an image that has busybox (E2E_TEST_IMAGE, loaded with
`e2e/cluster/<provider>/load-images`; pods use imagePullPolicy: Never).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

TEST_IMAGE = os.environ.get("E2E_TEST_IMAGE", "docker.io/tidelog/busybox:e2e")
DEFAULT_TIMEOUT = float(os.environ.get("E2E_TIMEOUT", "120"))


def kubectl_path() -> str:
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path:
        pytest.fail("no kubectl (set KUBECTL or put it on PATH)")
    return path


class Kube:
    def __init__(self, namespace: str):
        self.kubectl = kubectl_path()
        self.namespace = namespace

    def run(
        self, *args: str, input: str | None = None, check: bool = True, namespaced: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        cmd = [self.kubectl]
        if namespaced:
            cmd += ["-n", self.namespace]
        cmd += list(args)
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def out(self, *args: str) -> str:
        """kubectl ARGS in the namespace; its stripped stdout, or "" if it failed."""
        proc = self.run(*args, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def exec_out(self, pod: str, *cmd: str) -> str:
        """A command's stripped stdout in the pod, or "" if it failed."""
        return self.out("exec", pod, "--", *cmd)

    def apply(self, manifest: str) -> None:
        self.run("apply", "-f", "-", input=manifest)

    def get(self, kind: str, name: str = "", namespaced: bool = True) -> dict[str, Any]:
        args = ["get", kind] + ([name] if name else []) + ["-o", "json"]
        obj: dict[str, Any] = json.loads(self.run(*args, namespaced=namespaced).stdout)
        return obj

    def pod_phase(self, name: str) -> str:
        proc = self.run("get", "pod", name, "-o", "jsonpath={.status.phase}", check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def exec(self, pod: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("exec", pod, "--", *cmd, check=check)

    def dump(self) -> str:
        """Cluster state for a failure report: nodes, pods, events, pod logs."""
        out = []
        for args, ns in (
            (["get", "nodes", "-o", "wide"], False),
            (["get", "all,pvc,pv", "-o", "wide"], True),
            (["get", "events", "--sort-by=.lastTimestamp"], True),
        ):
            proc = self.run(*args, namespaced=ns, check=False)
            out.append(f"$ kubectl {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        pods = self.run("get", "pods", "-o", "name", check=False).stdout.split()
        for pod in pods:
            proc = self.run("logs", pod, "--all-containers", "--tail=50", check=False)
            out.append(f"$ kubectl logs {pod}\n{proc.stdout}{proc.stderr}")
        return "\n".join(out)


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.5) -> Any:
    """Poll predicate until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (AssertionError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            last_exc = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last_exc})" if last_exc else "")
            )
        time.sleep(interval)


def _container_port(pod: dict[str, Any], name: str) -> int | None:
    for container in pod["spec"]["containers"]:
        for port in container.get("ports") or []:
            if port.get("name") == name:
                number: int = port["containerPort"]
                return number
    return None


def write_file_sd(
    kube: Kube, path: str, selector: str, port: int | str, job_labels: dict[str, str] | None = None
) -> int:
    """Write a Prometheus file_sd_configs target file from the Running pods matching `selector`.

    Debian 12's Prometheus (2.42) has no kubernetes_sd_configs, so the harness discovers the pods
    and the host scrapes pod IPs directly. `port` is a number or the name of a container port (as a
    PodMonitor's ``port: metrics``). The file is replaced atomically. Returns the target count.
    """
    pods = json.loads(kube.run("get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    groups = []
    for p in pods:
        if p.get("status", {}).get("phase") != "Running" or not p["status"].get("podIP"):
            continue
        number = port if isinstance(port, int) else _container_port(p, port)
        if number is None:
            raise AssertionError(f"pod {p['metadata']['name']} has no container port named {port!r}")
        groups.append({
            "targets": [f"{p['status']['podIP']}:{number}"],
            "labels": {"namespace": p["metadata"]["namespace"], "pod": p["metadata"]["name"], **(job_labels or {})},
        })  # fmt: skip
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.replace(path)
    return len(groups)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    """A Prometheus process on the host; `targets[job]` is the file_sd file of each scrape job."""

    def __init__(self, base: str, targets: dict[str, str]) -> None:
        self.base = base
        self.targets = targets

    def query(self, promql: str) -> list[Any]:
        """An instant query's result vector (``[{"metric": {...}, "value": [t, "v"]}, ...]``)."""
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (our 127.0.0.1 URL)
            body = json.load(r)
        assert body["status"] == "success", body
        result: list[Any] = body["data"]["result"]
        return result

    def values(self, promql: str, label: str) -> dict[str, float]:
        """An instant query's values keyed by one label (which must tell the series apart)."""
        result = self.query(promql)
        out = {r["metric"].get(label, ""): float(r["value"][1]) for r in result}
        assert len(out) == len(result), f"{promql}: several series per {label}: {result}"
        return out


def prometheus_binary() -> str:
    binary = os.environ.get("PROMETHEUS") or shutil.which("prometheus")
    if not binary:
        pytest.fail("no prometheus (set PROMETHEUS or put it on PATH)")
    return binary


@contextmanager
def run_prometheus(workdir: Path, jobs: Sequence[str], interval: str = "1s") -> Iterator[Prometheus]:
    """Run a real Prometheus on 127.0.0.1 (a free port) with one file-SD scrape job per name in
    `jobs` (targets written by `write_file_sd`, re-read every second); stop it on exit."""
    binary = prometheus_binary()
    targets = {job: str(workdir / f"targets-{job}.json") for job in jobs}
    for path in targets.values():
        Path(path).write_text("[]")
    scrape = "".join(
        f"""- job_name: {job}
  scrape_interval: {interval}
  scrape_timeout: {interval}
  file_sd_configs: [{{files: ["{path}"], refresh_interval: 1s}}]
"""
        for job, path in targets.items()
    )
    config = workdir / "prometheus.yml"
    glob = f"global: {{scrape_interval: {interval}, evaluation_interval: {interval}}}\n"
    config.write_text(f"{glob}scrape_configs:\n{scrape}")
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:

            def ready() -> bool:
                assert proc.poll() is None, f"prometheus exited: {log_path.read_text()[-2000:]}"
                try:
                    with urllib.request.urlopen(base + "/-/ready", timeout=2) as r:  # noqa: S310 (127.0.0.1 only)
                        return bool(r.status == 200)
                except OSError:
                    return False

            wait_until("prometheus ready", ready, timeout=60)
            yield Prometheus(base, targets)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
