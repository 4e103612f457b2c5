"""Helpers for the e2e tests: kubectl through subprocess, waits with deadlines, state dumps.

The suite runs on whatever cluster KUBECONFIG names (the local or kind provider). It needs only
`kubectl` (KUBECTL env var, else PATH) and an image that has busybox (E2E_TEST_IMAGE, loaded with
`e2e/cluster/<provider>/load-images`; pods use imagePullPolicy: Never).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
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


def write_file_sd(kube: Kube, path: str, selector: str, port: int, job_labels: dict[str, str] | None = None) -> int:
    """Write a Prometheus file_sd_configs target file from the Running pods matching `selector`.

    Debian 12's Prometheus (2.42) has no kubernetes_sd_configs, so the harness discovers the pods
    and the host scrapes pod IPs directly. The file is replaced atomically. Returns the target count.
    """
    pods = json.loads(kube.run("get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    groups = [
        {
            "targets": [f"{p['status']['podIP']}:{port}"],
            "labels": {"namespace": p["metadata"]["namespace"], "pod": p["metadata"]["name"], **(job_labels or {})},
        }
        for p in pods
        if p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP")
    ]
    tmp = Path(path + ".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.replace(path)
    return len(groups)
