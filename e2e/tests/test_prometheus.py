"""Prometheus scrapes a pod's /metrics (file-based discovery written from the pod list)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_kube import TEST_IMAGE, Kube, wait_until, write_file_sd  # type: ignore[import-not-found]

METRICS = "# HELP e2e_smoke_value A constant for the e2e test.\\n# TYPE e2e_smoke_value gauge\\ne2e_smoke_value 42\\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, str]]:
    binary = os.environ.get("PROMETHEUS") or shutil.which("prometheus")
    if not binary:
        pytest.fail("no prometheus (set PROMETHEUS or put it on PATH)")
    targets = tmp_path / "targets.json"
    targets.write_text("[]")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
- job_name: e2e-pods
  scrape_interval: 1s
  scrape_timeout: 1s
  file_sd_configs: [{{files: ["{targets}"], refresh_interval: 1s}}]
""")
    port = _free_port()
    with (tmp_path / "prometheus.log").open("w") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:

            def ready() -> bool:
                assert proc.poll() is None, f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-2000:]}"
                try:
                    with urllib.request.urlopen(base + "/-/ready", timeout=2) as r:  # noqa: S310 (127.0.0.1 only)
                        return bool(r.status == 200)
                except OSError:
                    return False

            wait_until("prometheus ready", ready, timeout=60)
            yield base, str(targets)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _query(base: str, promql: str) -> list[Any]:
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (our 127.0.0.1 URL)
        body = json.load(r)
    assert body["status"] == "success", body
    result: list[Any] = body["data"]["result"]
    return result


def test_prometheus_scrapes_pod_metrics(kube: Kube, prometheus: tuple[str, str]) -> None:
    base, targets = prometheus
    kube.apply(f"""
apiVersion: v1
kind: Pod
metadata:
  name: exporter
  labels: {{app: exporter, e2e-scrape: "true"}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {TEST_IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && printf '{METRICS}' > /www/metrics && exec httpd -f -p 9100 -h /www"]
""")
    wait_until("pod exporter Running", lambda: kube.pod_phase("exporter") == "Running")
    assert write_file_sd(kube, targets, "e2e-scrape=true", 9100, {"e2e_test": "prometheus"}) == 1

    def scraped() -> bool:
        result = _query(base, 'e2e_smoke_value{job="e2e-pods",pod="exporter"}')
        return bool(result) and result[0]["value"][1] == "42"

    wait_until("prometheus has scraped e2e_smoke_value from the pod", scraped, timeout=60)
    up = _query(base, 'up{job="e2e-pods",pod="exporter"}')
    assert up, "no up series for the pod"
    assert up[0]["value"][1] == "1"
