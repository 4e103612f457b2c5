"""Helpers for the e2e smoke tests: kubectl through subprocess, waits with deadlines, state dumps.

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
import uuid
from typing import Any, Callable

import pytest

TEST_IMAGE = os.environ.get("E2E_TEST_IMAGE", "docker.io/tidelog/busybox:e2e")
DEFAULT_TIMEOUT = float(os.environ.get("E2E_TIMEOUT", "120"))


def kubectl_path() -> str:
    path = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not path:
        pytest.skip("no kubectl (set KUBECTL or put it on PATH)")
    return path


class Kube:
    def __init__(self, namespace: str):
        self.kubectl = kubectl_path()
        self.namespace = namespace

    def run(self, *args: str, input: str | None = None, check: bool = True,
            namespaced: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [self.kubectl]
        if namespaced:
            cmd += ["-n", self.namespace]
        cmd += list(args)
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def apply(self, manifest: str) -> None:
        self.run("apply", "-f", "-", input=manifest)

    def get(self, kind: str, name: str = "", namespaced: bool = True) -> dict[str, Any]:
        args = ["get", kind] + ([name] if name else []) + ["-o", "json"]
        return json.loads(self.run(*args, namespaced=namespaced).stdout)

    def pod_phase(self, name: str) -> str:
        proc = self.run("get", "pod", name, "-o", "jsonpath={.status.phase}", check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def exec(self, pod: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("exec", pod, "--", *cmd, check=check)

    def dump(self) -> str:
        """Cluster state for a failure report: nodes, pods, events, pod logs."""
        out = []
        for args, ns in ((["get", "nodes", "-o", "wide"], False),
                         (["get", "all,pvc,pv", "-o", "wide"], True),
                         (["get", "events", "--sort-by=.lastTimestamp"], True)):
            proc = self.run(*args, namespaced=ns, check=False)
            out.append(f"$ kubectl {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        pods = self.run("get", "pods", "-o", "name", check=False).stdout.split()
        for pod in pods:
            proc = self.run("logs", pod, "--all-containers", "--tail=50", check=False)
            out.append(f"$ kubectl logs {pod}\n{proc.stdout}{proc.stderr}")
        return "\n".join(out)


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT,
               interval: float = 0.5) -> Any:
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
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                                 + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


@pytest.fixture(scope="session")
def kube(request) -> Kube:
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("KUBECONFIG is not set (bring a cluster up: e2e/cluster/local/up)")
    ns = f"e2e-{uuid.uuid4().hex[:6]}"
    k = Kube(ns)
    k.run("create", "namespace", ns, namespaced=False)
    # The namespace's default service account appears asynchronously; pods need it.
    wait_until("default service account", lambda: k.run("get", "sa", "default", check=False).returncode == 0)
    yield k
    if request.session.testsfailed:
        print("\n===== cluster state =====\n" + k.dump())
    k.run("delete", "namespace", ns, "--wait=false", namespaced=False, check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "kube" in item.funcargs:
        report.sections.append(("cluster state", item.funcargs["kube"].dump()))
