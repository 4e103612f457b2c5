"""The kopf handlers: thin. They wake the per-Cluster loop, and the Topic finalizer deletes topics.

- ``cluster_loop``: one daemon per Cluster, the only periodic work (no timer per Topic). Each turn
  re-reads the Cluster and runs ``reconcile.reconcile_cluster`` (which also reconciles the
  Cluster's Topics), then sleeps ``requeue_after`` (short while something moves, the reconcile
  interval otherwise) or until a handler wakes it.
- Cluster and Topic create/update/resume: wake the loop (a Topic naming no Cluster is reported).
- Topic delete (finalizer ``tidelog.dev/finalizer``): ``topics.delete_topic``; a Cluster that is
  gone or being deleted never holds a Topic (or its namespace) back.
- User create/update/resume: wake the loop (which reconciles the Cluster's Users); User delete
  (the same finalizer): ``users.delete_user`` takes its ACLs and credentials out of the Cluster.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from tidelog.broker.admin.client import AdminClient, ClientTls
from tidelog.broker.admin.model import ClusterAdmin
from tidelog.operator import crd, schema
from tidelog.operator.decisions import set_condition, status_patch
from tidelog.operator.kube import KubeAPI
from tidelog.operator.metrics import METRICS
from tidelog.operator.models import GROUP, VERSION, TopicStatus
from tidelog.operator.names import ClusterRef
from tidelog.operator.reconcile import now_rfc3339, reconcile_cluster
from tidelog.operator.topics import delete_topic
from tidelog.operator.user_models import UserStatus
from tidelog.operator.users import delete_user

Log = logging.Logger | logging.LoggerAdapter[Any]
FINALIZER = "tidelog.dev/finalizer"
ERROR_BACKOFF_S = 10.0
DELETE_RETRIES = 30  # x 10 s: an unreachable (but existing) cluster holds a Topic or User 5 minutes at most


@dataclass
class Runtime:
    """What the handlers share: settings from main, the Kubernetes adapter, the wake-up events."""

    image_repository: str = "tidelog/broker"
    interval: float = 60.0
    apply_crds: bool = False
    kube: KubeAPI | None = None
    wake: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)

    def event(self, namespace: str, cluster: str) -> asyncio.Event:
        return self.wake.setdefault((namespace, cluster), asyncio.Event())

    def api(self) -> KubeAPI:
        assert self.kube is not None, "the operator has not started"
        return self.kube


RUNTIME = Runtime()


def admin_client(target: str, token: str | None = None) -> AdminClient:
    """A client of a broker's admin API, protected as the operator's environment says (all optional,
    the CLI's names): ``TIDELOG_ADMIN_CA`` (turns TLS on), ``TIDELOG_ADMIN_CERT`` and
    ``TIDELOG_ADMIN_KEY`` (mutual TLS), ``TIDELOG_ADMIN_SERVER_NAME``, ``TIDELOG_ADMIN_TOKEN_FILE``."""
    env = {k: v for k, v in os.environ.items() if k.startswith("TIDELOG_ADMIN_") and v}
    tls = None
    if any(k in env for k in ("TIDELOG_ADMIN_CA", "TIDELOG_ADMIN_CERT", "TIDELOG_ADMIN_SERVER_NAME")):
        path = {k: Path(v) for k, v in env.items()}
        tls = ClientTls(
            path.get("TIDELOG_ADMIN_CA"),
            path.get("TIDELOG_ADMIN_CERT"),
            path.get("TIDELOG_ADMIN_KEY"),
            env.get("TIDELOG_ADMIN_SERVER_NAME"),
        )
    token_file = Path(env["TIDELOG_ADMIN_TOKEN_FILE"]) if "TIDELOG_ADMIN_TOKEN_FILE" in env and not token else None
    return AdminClient(target, timeout=15.0, tls=tls, token=token, token_file=token_file)


async def cluster_admin(kube: KubeAPI, cluster: dict[str, Any]) -> AdminClient:
    """A client of a Cluster's admin API with its token (a secured cluster's Secret), for the
    finalizers."""
    ref = ClusterRef.from_body(cluster)
    secret = await kube.get("Secret", ref.namespace, ref.admin_token_secret)
    raw = ((secret or {}).get("data") or {}).get("token")
    return admin_client(ref.admin_bootstrap_address, base64.b64decode(raw).decode() if raw else None)


@kopf.on.startup()
async def startup(*, settings: kopf.OperatorSettings, logger: Log, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="tidelog.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="tidelog.dev")
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True  # no namespace/CRD watching: namespaces are named, CRDs installed
    settings.watching.server_timeout = 300  # re-list now and then: watches can stall silently
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.PermanentError("no Kubernetes credentials (no service account, no KUBECONFIG)")
    RUNTIME.kube = KubeAPI.connect(info)
    if RUNTIME.apply_crds:
        for name, body in crd.all_crds().items():
            await RUNTIME.kube.apply(body)
            logger.info("applied CRD %s", name)


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if RUNTIME.kube is not None:
        await RUNTIME.kube.close()


@kopf.on.login()
def login(*, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)


@kopf.daemon(GROUP, VERSION, "clusters", cancellation_timeout=10.0)
async def cluster_loop(*, name: str, namespace: str | None, stopped: kopf.DaemonStopped, logger: Log, **_: Any) -> None:
    assert namespace is not None  # Clusters are namespaced
    kube = RUNTIME.api()
    wake = RUNTIME.event(namespace, name)
    try:
        while not stopped:
            wake.clear()
            body = await kube.get("Cluster", namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return
            try:
                with METRICS.track("Cluster", namespace, name):
                    outcome = await reconcile_cluster(kube, admin_client, body, RUNTIME.image_repository,
                                                      RUNTIME.interval)  # fmt: skip
                delay = outcome.requeue_after
                ready = next((c for c in outcome.status.conditions if c.type == "Ready"), None)
                logger.debug("pass %s -> %s, again in %.0fs", outcome.steps, ready and ready.reason, delay)
            except Exception:
                logger.exception(
                    "reconcile of Cluster %s/%s failed; retrying in %.0fs", namespace, name, ERROR_BACKOFF_S
                )
                delay = ERROR_BACKOFF_S
            await _sleep(delay, wake, stopped)
    finally:
        RUNTIME.wake.pop((namespace, name), None)
        METRICS.forget("Cluster", namespace, name)


async def _sleep(delay: float, wake: asyncio.Event, stopped: kopf.DaemonStopped) -> None:
    """Sleep ``delay`` seconds, less if a handler wakes the loop or kopf stops it (checked each second,
    so a deleted Cluster's loop ends well within its cancellation timeout)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + delay
    while not stopped and not wake.is_set() and (left := end - loop.time()) > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(left, 1.0)):  # not wait_for: it may swallow a cancellation (3.11)
                await wake.wait()


@kopf.on.update(GROUP, VERSION, "clusters", field="spec")
async def cluster_changed(*, name: str, namespace: str | None, **_: Any) -> None:
    assert namespace is not None
    RUNTIME.event(namespace, name).set()


async def _member_changed(
    kind: str, status_type: type[TopicStatus] | type[UserStatus], body: kopf.Body, name: str, namespace: str
) -> None:
    """A Topic or User changed: wake its Cluster's loop (which reconciles it), or report that the
    Cluster it names does not exist."""
    cluster = body["spec"]["clusterRef"]["name"]
    kube = RUNTIME.api()
    if await kube.get("Cluster", namespace, cluster) is None:
        status: TopicStatus | UserStatus = schema.load(status_type, dict(body.get("status") or {}))
        status.conditions = set_condition(status.conditions, "Ready", False, "ClusterNotFound",
                                          f"no Cluster {cluster} in namespace {namespace}", now_rfc3339(),
                                          body["metadata"].get("generation"))  # fmt: skip
        await kube.patch_status(kind, namespace, name, status_patch(status))
        return
    RUNTIME.event(namespace, cluster).set()


Cleanup = Callable[[ClusterAdmin | None, dict[str, Any]], Awaitable[str]]


async def _member_deleted(
    body: kopf.Body, namespace: str, retry: int, logger: Log, what: str, cleanup: Cleanup
) -> None:
    """A Topic or User is being deleted: ``cleanup`` takes it out of its Cluster (with None when the
    Cluster is gone or going: nothing holds the resource back); an unreachable Cluster is retried
    for ``DELETE_RETRIES`` x 10 s, then given up on."""
    kube = RUNTIME.api()
    obj = {"metadata": dict(body["metadata"]), "spec": dict(body["spec"])}
    cluster = await kube.get("Cluster", namespace, body["spec"]["clusterRef"]["name"])
    if cluster is None or cluster["metadata"].get("deletionTimestamp"):
        logger.info("%s", await cleanup(None, obj))
        return
    try:
        async with await cluster_admin(kube, cluster) as admin:
            logger.info("%s", await cleanup(admin, obj))
    except ConnectionError as exc:
        if retry >= DELETE_RETRIES:
            logger.warning("giving up on %s (cluster unreachable: %s)", what, exc)
            return
        raise kopf.TemporaryError(f"cluster unreachable: {exc}", delay=10) from exc


@kopf.on.create(GROUP, VERSION, "topics")
@kopf.on.update(GROUP, VERSION, "topics")
@kopf.on.resume(GROUP, VERSION, "topics")
async def topic_changed(*, body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
    assert namespace is not None
    await _member_changed("Topic", TopicStatus, body, name, namespace)


@kopf.on.delete(GROUP, VERSION, "topics")
async def topic_deleted(*, body: kopf.Body, namespace: str | None, retry: int, logger: Log, **_: Any) -> None:
    assert namespace is not None
    kube = RUNTIME.api()

    async def cleanup(admin: ClusterAdmin | None, topic: dict[str, Any]) -> str:
        return await delete_topic(kube, admin, topic)

    await _member_deleted(body, namespace, retry, logger, "deleting the topic (the Kafka topic stays)", cleanup)


@kopf.on.create(GROUP, VERSION, "users")
@kopf.on.update(GROUP, VERSION, "users")
@kopf.on.resume(GROUP, VERSION, "users")
async def user_changed(*, body: kopf.Body, name: str, namespace: str | None, **_: Any) -> None:
    assert namespace is not None
    await _member_changed("User", UserStatus, body, name, namespace)


@kopf.on.delete(GROUP, VERSION, "users")
async def user_deleted(*, body: kopf.Body, namespace: str | None, retry: int, logger: Log, **_: Any) -> None:
    assert namespace is not None
    await _member_deleted(body, namespace, retry, logger, "removing the user from the cluster", delete_user)
