"""What every operator e2e module needs: the images' tag, step timings, the chart installed as an
operator watching the test's namespace (then its resources deleted while it still runs, so their
finalizers finish, and the release uninstalled), and the broker volumes given to the broker's uid.

The local provider's hostPath volumes ignore fsGroup: a background thread gives each new volume of
the namespace to uid 10001, as a CSI driver honouring fsGroup would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from e2e_kube import Kube  # type: ignore[import-not-found]

ROOT = Path(__file__).resolve().parents[2]
_VERSION = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
assert _VERSION
TAG = f"{_VERSION.group(1)}-e2e"
UID = 10001


class Steps:
    """Wall times of named steps: ``with steps("name"): ...``; ``report`` prints them (and writes
    them to the file ``env_var`` names, if set)."""

    def __init__(self, title: str, env_var: str) -> None:
        self.title, self.env_var = title, env_var
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = round(time.monotonic() - t0, 1)

    def report(self) -> None:
        if not self.timings:
            return
        print(f"\n{self.title} step timings (s): " + json.dumps(self.timings, indent=1))
        if os.environ.get(self.env_var):
            Path(os.environ[self.env_var]).write_text(json.dumps(self.timings, indent=1))


def _volume_owner(kube: Kube, stop: threading.Event) -> None:
    done: set[str] = set()
    while not stop.wait(1.0):
        proc = kube.run("get", "pv", "-o", "json", namespaced=False, check=False)
        if proc.returncode != 0:
            continue
        for pv in json.loads(proc.stdout)["items"]:
            path = (pv["spec"].get("hostPath") or {}).get("path")
            claim = pv["spec"].get("claimRef") or {}
            if path and path not in done and claim.get("namespace") == kube.namespace and Path(path).is_dir():
                os.chown(path, UID, UID)
                done.add(path)


@contextlib.contextmanager
def operator_release(kube: Kube, release: str, steps: Steps, delete_after: list[list[str]]) -> Iterator[Kube]:
    """``helm install`` the chart as ``release`` (the operator watches only this namespace, reconciles
    every 10 s, logs at debug); afterwards ``kubectl delete`` each of ``delete_after`` (e.g.
    ``["topic", "--all"]``) while the operator runs, then uninstall, then print the timings."""
    helm = os.environ.get("HELM") or "helm"
    stop = threading.Event()
    threading.Thread(target=_volume_owner, args=(kube, stop), daemon=True).start()
    try:
        with steps("helm install (operator Ready)"):
            subprocess.run(
                [helm, "install", release, str(ROOT / "helm" / "tidelog"), "-n", kube.namespace, "--wait",
                 "--timeout", "120s", "--set", f"image.tag={TAG}", "--set", "image.pullPolicy=Never",
                 "--set", f"watchNamespaces={{{kube.namespace}}}", "--set", "reconcileIntervalSeconds=10",
                 "--set", "logLevel=debug"],
                check=True, capture_output=True, text=True, timeout=180,
            )  # fmt: skip
        yield kube
        for what in delete_after:
            kube.run("delete", *what, "--wait=true", "--timeout=60s", check=False, timeout=90)
        subprocess.run([helm, "uninstall", release, "-n", kube.namespace], check=False, capture_output=True,
                       timeout=120)  # fmt: skip
    finally:
        stop.set()
        steps.report()
