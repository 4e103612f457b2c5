"""Prometheus scrapes a pod's /metrics (file-based discovery written from the pod list)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_kube import TEST_IMAGE, Kube, Prometheus, run_prometheus, wait_until, write_file_sd  # type: ignore[import-not-found]

METRICS = "# HELP e2e_smoke_value A constant for the e2e test.\\n# TYPE e2e_smoke_value gauge\\ne2e_smoke_value 42\\n"


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    with run_prometheus(tmp_path, ["e2e-pods"]) as prom:
        yield prom


def test_prometheus_scrapes_pod_metrics(kube: Kube, prometheus: Prometheus) -> None:
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
    assert write_file_sd(kube, prometheus.targets["e2e-pods"], "e2e-scrape=true", 9100, {"e2e_test": "prometheus"}) == 1

    def scraped() -> bool:
        result = prometheus.query('e2e_smoke_value{job="e2e-pods",pod="exporter"}')
        return bool(result) and result[0]["value"][1] == "42"

    wait_until("prometheus has scraped e2e_smoke_value from the pod", scraped, timeout=60)
    up = prometheus.query('up{job="e2e-pods",pod="exporter"}')
    assert up, "no up series for the pod"
    assert up[0]["value"][1] == "1"
