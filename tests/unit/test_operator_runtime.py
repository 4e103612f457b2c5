"""The operator's process around the runbook: settings from the chart's environment, the metrics the
chart's alerts use and their HTTP endpoint, the Kubernetes adapter's URLs and pruning."""

from __future__ import annotations

import argparse
import asyncio
import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tidelog.operator import kube, main
from tidelog.operator.metrics import OperatorMetrics, serve


def test_settings_come_from_the_charts_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"WATCH_NAMESPACES": "a,b", "APPLY_CRDS": "true", "BROKER_IMAGE_REPOSITORY": "r/b",
                       "RECONCILE_INTERVAL_S": "15", "LOG_LEVEL": "debug", "METRICS_PORT": "9000"}.items():  # fmt: skip
        monkeypatch.setenv(f"TIDELOG_OPERATOR_{key}", value)
    parser = argparse.ArgumentParser()
    main.add_arguments(parser)
    args = parser.parse_args([])
    assert (args.watch_namespaces, args.apply_crds, args.broker_image_repository) == ("a,b", True, "r/b")
    assert (args.reconcile_interval, args.log_level, args.metrics_port) == (15.0, "debug", 9000)


def test_tidelog_operator_is_a_subcommand_of_the_cli() -> None:
    from tidelog.broker.cli.main import build_parser

    args = build_parser().parse_args(["operator", "--watch-namespaces", "x"])
    assert args.func is main.run
    assert args.watch_namespaces == "x"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_metrics_count_reconciles_failures_and_show_the_one_in_progress() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    with metrics.track("Cluster", "ns", "demo"):
        assert b'tidelog_operator_reconcile_in_progress_start_time_seconds{kind="Cluster"' in metrics.generate_latest()
    with pytest.raises(RuntimeError), metrics.track("Cluster", "ns", "demo"):
        raise RuntimeError("boom")
    text = metrics.generate_latest().decode()
    assert 'tidelog_operator_reconciles_total{kind="Cluster",name="demo",namespace="ns"} 2.0' in text
    assert 'tidelog_operator_reconcile_failures_total{kind="Cluster",name="demo",namespace="ns"} 1.0' in text
    assert "tidelog_operator_reconcile_duration_seconds_count" in text
    assert "tidelog_operator_reconcile_in_progress_start_time_seconds{" not in text  # none running now

    async def scrape() -> tuple[str, str]:
        port = _free_port()
        runner = await serve(port, metrics, host="127.0.0.1")
        try:
            loop = asyncio.get_running_loop()

            def get(path: str) -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                    body: bytes = resp.read()
                    return body.decode()

            return await loop.run_in_executor(None, get, "/healthz"), await loop.run_in_executor(None, get, "/metrics")
        finally:
            await runner.cleanup()

    health, page = asyncio.run(scrape())
    assert health == "ok\n"
    assert "tidelog_operator_reconcile_failures_total" in page


def test_api_paths() -> None:
    assert kube.path("StatefulSet", "ns", "demo") == "/apis/apps/v1/namespaces/ns/statefulsets/demo"
    assert (
        kube.path("Cluster", "ns", "demo", "status") == "/apis/tidelog.dev/v1alpha1/namespaces/ns/clusters/demo/status"
    )
    assert kube.path("CustomResourceDefinition", None, "topics.tidelog.dev") == (
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/topics.tidelog.dev"
    )
    assert kube.path("Pod", "ns") == "/api/v1/namespaces/ns/pods"


def test_prune_deletes_only_what_is_no_longer_wanted() -> None:
    class Fake:
        def __init__(self) -> None:
            self.deleted: list[str] = []

        async def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
            return [{"metadata": {"name": n}} for n in ("demo", "demo-brokers", "demo-0-external")]

        async def delete(self, kind: str, namespace: str, name: str) -> bool:
            self.deleted.append(name)
            return True

    fake = Fake()
    removed = asyncio.run(kube.prune(fake, "ns", "tidelog.dev/cluster=demo", "Service", {"demo", "demo-brokers"}))  # type: ignore[arg-type]
    assert removed == ["demo-0-external"]
    assert fake.deleted == ["demo-0-external"]


def test_the_cluster_loop_sleeps_until_woken_or_stopped() -> None:
    from tidelog.operator.handlers import _sleep

    class Stopped:
        def __init__(self, value: bool) -> None:
            self.value = value

        def __bool__(self) -> bool:
            return self.value

    async def timed(wake: asyncio.Event, stopped: Stopped, delay: float) -> float:
        start = asyncio.get_running_loop().time()
        await _sleep(delay, wake, stopped)  # type: ignore[arg-type]
        return asyncio.get_running_loop().time() - start

    async def scenario() -> tuple[float, float, float]:
        woken = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, woken.set)
        return (
            await timed(woken, Stopped(False), 30),
            await timed(asyncio.Event(), Stopped(True), 30),
            await timed(asyncio.Event(), Stopped(False), 0.1),
        )

    by_wake, by_stop, by_time = asyncio.run(scenario())
    assert by_wake < 1
    assert by_stop < 0.1
    assert 0.1 <= by_time < 1
