"""Fixtures of the e2e tests. Helpers live in e2e_kube.py (put on sys.path here, since the
project runs pytest with --import-mode=importlib)."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import tbguard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_kube import Kube, wait_until  # type: ignore[import-not-found]

tbguard.install()


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest) -> Iterator[Kube]:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail("KUBECONFIG is not set (bring a cluster up: e2e/cluster/local/up)")
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
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    if report.when == "call" and report.failed and "kube" in funcargs:
        report.sections.append(("cluster state", funcargs["kube"].dump()))
