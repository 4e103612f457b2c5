"""The operator's Prometheus metrics and its ``/healthz`` + ``/metrics`` HTTP endpoint.

Job: count and time reconciles per resource, count failures (the chart's
``TidelogOperatorReconcileFailing`` alert) and expose when a reconcile in progress started (the
stuck-reconcile alert: ``time() - tidelog_operator_reconcile_in_progress_start_time_seconds``).
``track(kind, namespace, name)`` wraps one reconcile. ``certificate_expiry`` is when a Cluster's
CA and its first broker certificate expire (TLS listeners), for an alert well before the
operator's own renewal window would be missed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest as _generate_latest

LABELS = ("kind", "namespace", "name")


class OperatorMetrics:
    """The metric families, in one registry (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.reconciles = Counter(
            "tidelog_operator_reconciles",
            "Reconcile passes run, by Cluster (one pass also reconciles the Cluster's Topics)",
            LABELS,
            registry=registry,
        )
        self.failures = Counter(
            "tidelog_operator_reconcile_failures", "Reconciles that raised an error", LABELS, registry=registry
        )
        self.duration = Histogram(
            "tidelog_operator_reconcile_duration_seconds",
            "How long one reconcile took",
            ("kind",),
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.in_progress = Gauge(
            "tidelog_operator_reconcile_in_progress_start_time_seconds",
            "Start time (Unix seconds) of the reconcile now running; absent when none runs",
            LABELS,
            registry=registry,
        )
        self.certificate_expiry = Gauge(
            "tidelog_operator_certificate_expiration_timestamp_seconds",
            "When a Cluster's certificate expires (Unix seconds): certificate=ca (the cluster CA) or "
            "brokers (the first broker certificate to expire)",
            ("namespace", "name", "certificate"),
            registry=registry,
        )

    @contextmanager
    def track(self, kind: str, namespace: str, name: str) -> Iterator[None]:
        labels = (kind, namespace, name)
        start = time.monotonic()
        self.in_progress.labels(*labels).set(time.time())
        try:
            yield
        except BaseException:
            self.failures.labels(*labels).inc()
            raise
        finally:
            self.reconciles.labels(*labels).inc()
            self.duration.labels(kind).observe(time.monotonic() - start)
            self.in_progress.remove(*labels)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """Drop a deleted resource's series."""
        for family in (self.reconciles, self.failures):
            with suppress(KeyError):
                family.remove(kind, namespace, name)
        if kind == "Cluster":
            self.forget_certificates(namespace, name)

    def set_certificate_expiry(self, namespace: str, name: str, certificate: str, when: float | None) -> None:
        if when is None:
            with suppress(KeyError):
                self.certificate_expiry.remove(namespace, name, certificate)
        else:
            self.certificate_expiry.labels(namespace, name, certificate).set(when)

    def forget_certificates(self, namespace: str, name: str) -> None:
        for certificate in ("ca", "brokers"):
            self.set_certificate_expiry(namespace, name, certificate, None)

    def generate_latest(self) -> bytes:
        return _generate_latest(self.registry)


METRICS = OperatorMetrics()


async def serve(port: int, metrics: OperatorMetrics = METRICS, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104
    """Start ``/healthz`` and ``/metrics`` on ``host:port``; the caller cleans the runner up."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def metrics_page(_: web.Request) -> web.Response:
        resp = web.Response(body=metrics.generate_latest())
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
