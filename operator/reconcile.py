"""The Cluster reconcile runbook: ordered, named, idempotent steps, level-based.

Each pass re-reads the Cluster, its StatefulSet and pods and the brokers' own view (admin API), then
walks the steps below in order; a step that must wait returns ``Wait`` and the pass ends there (the
status written, the loop coming back after ``Wait.after`` seconds). Long operations (scaling,
rolling restarts) keep their progress in ``status.scaling`` / ``status.roll``, so an operator restart
picks them up where they were.

1. validate      -> Degraded/InvalidSpec if the spec cannot be built
2. plan scaling  -> how many brokers the StatefulSet has in this pass (scale-down waits for a drain)
3. apply         -> server-side apply of every desired object; prune Services no longer wanted;
                    with secured listeners, first the certificates (certificates.py: CA, broker
                    certificates, renewal; their annotation in the pod template makes a renewal a roll)
4. brokers ready -> wait until every pod of the StatefulSet is Ready
5. describe      -> controller, brokers, URP/offline from the admin API
6. scale up      -> new brokers in -> rebalance -> wait for the reassignments
7. scale down    -> drain the highest ordinals -> verify they hold nothing -> shrink
8. roll          -> restart stale pods one at a time (can_restart first, the controller last)
9. topics        -> the Cluster's Topics in one batch (topics.py)
10. users        -> the Cluster's Users: Secrets, SCRAM credentials, exact ACLs (users.py)
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tidelog.broker.admin.model import ClusterAdmin, ClusterDesc, Move
from tidelog.operator import desired, desired_tls, schema
from tidelog.operator.certificates import CertificatesPending, reconcile_certificates
from tidelog.operator.decisions import (
    drain_blocker,
    evacuation_moves,
    plan_scaling,
    rebalance_missed,
    roll_order,
    set_condition,
    status_patch,
)
from tidelog.operator.kube import Kube, prune
from tidelog.operator.metrics import METRICS
from tidelog.operator.models import BrokerStatus, ClusterSpec, ClusterStatus, RollStatus
from tidelog.operator.names import COMPONENT_LABEL, EXTERNAL_PORT, HASH_ANNOTATION, KAFKA_PORT, MANAGED_BY, ClusterRef
from tidelog.operator.topics import reconcile_topics
from tidelog.operator.users import reconcile_users

AdminFactory = Callable[..., AbstractAsyncContextManager[ClusterAdmin]]  # (target, token=None)
log = logging.getLogger(__name__)
BUSY_S = 3.0  # come back soon while something moves
BROKER_BACK_TIMEOUT_S = 600.0  # a restarted broker not Ready and alive by then stops the roll


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds_since(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return time.time() - datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


class Wait(Exception):  # noqa: N818 - a control-flow signal, not an error
    """A step must wait: end the pass with ``Reconciling`` (or ``Degraded``) and come back later."""

    def __init__(self, reason: str, message: str, after: float = BUSY_S, degraded: bool = False) -> None:
        super().__init__(message)
        self.reason, self.message, self.after, self.degraded = reason, message, after, degraded


@dataclass
class Outcome:
    """What a pass did: the status written and when to come back."""

    status: ClusterStatus
    requeue_after: float
    steps: list[str] = field(default_factory=list)


@dataclass
class Pass:
    """One reconcile pass of one Cluster (the state shared by its steps)."""

    kube: Kube
    admin_for: AdminFactory
    body: dict[str, Any]
    image_repository: str
    interval: float
    ref: ClusterRef = field(init=False)
    spec: ClusterSpec = field(init=False)
    status: ClusterStatus = field(init=False)
    now: str = field(default_factory=now_rfc3339)
    sts: dict[str, Any] | None = None
    pods: dict[int, dict[str, Any]] = field(default_factory=dict)
    cluster: ClusterDesc | None = None
    steps: list[str] = field(default_factory=list)
    warning: tuple[str, str] | None = None  # (reason, message) of the Warning condition
    external: dict[int, desired.ExternalAddress] = field(default_factory=dict)  # per broker, from its Service
    external_bootstrap: desired.ExternalAddress | None = None
    admin_token: str | None = None  # a secured cluster's admin API token (certificates step)

    def __post_init__(self) -> None:
        self.ref = ClusterRef.from_body(self.body)
        self.status = schema.load(ClusterStatus, self.body.get("status") or {})

    @property
    def generation(self) -> int | None:
        gen = self.body["metadata"].get("generation")
        return int(gen) if gen is not None else None

    def cond(self, type_: str, ok: bool, reason: str, message: str) -> None:
        self.status.conditions = set_condition(
            self.status.conditions, type_, ok, reason, message, self.now, self.generation
        )

    # ----- the runbook -----
    async def run(self) -> Outcome:
        after = self.interval
        try:
            for step in (self.validate, self.plan_and_apply, self.brokers_ready, self.describe,
                         self.scale_up, self.scale_down, self.roll, self.topics, self.users):  # fmt: skip
                self.steps.append(step.__name__)
                await step()
            self.finish_ready()
        except Wait as w:
            after = min(w.after, self.interval)
            if w.degraded or not self._ready():
                self.cond("Ready", False, w.reason, w.message)
            else:
                self.cond("Ready", True, "Ready", f"{self.status.ready_replicas} brokers ready ({w.reason})")
            self.cond("Reconciling", not w.degraded, w.reason, w.message)
            self.cond("Degraded", w.degraded, w.reason if w.degraded else "AsExpected", w.message if w.degraded else "")
        reason, message = self.warning or ("None", "")
        self.cond("Warning", self.warning is not None, reason, message)
        await self.kube.patch_status("Cluster", self.ref.namespace, self.ref.name, status_patch(self.status))
        return Outcome(self.status, after, self.steps)

    def _ready(self) -> bool:
        want = (self.sts or {}).get("spec", {}).get("replicas")
        return bool(want) and self.status.ready_replicas >= want and self.cluster is not None

    def finish_ready(self) -> None:
        self.status.observed_generation = self.generation
        offline = self.status.offline_partitions or 0
        message = f"{self.status.ready_replicas} brokers ready" + (f", {offline} partitions offline" if offline else "")
        self.cond("Ready", offline == 0, "Ready" if offline == 0 else "OfflinePartitions", message)
        self.cond("Reconciling", False, "Reconciled", "")
        self.cond("Degraded", False, "AsExpected", "")

    async def validate(self) -> None:
        try:
            self.spec = schema.load(ClusterSpec, self.body.get("spec") or {})
            if not self.spec.image:
                self.spec.image = f"{self.image_repository}:{self.spec.version}"
            desired.desired_objects(self.ref, self.spec)
        except (ValueError, TypeError, KeyError) as exc:
            raise Wait("InvalidSpec", f"the spec cannot be applied: {exc}", after=self.interval, degraded=True) from exc

    async def plan_and_apply(self) -> None:
        ns = self.ref.namespace
        self.sts = await self.kube.get("StatefulSet", ns, self.ref.statefulset)
        current = self.sts["spec"]["replicas"] if self.sts else None
        plan = plan_scaling(self.spec.replicas, current, self.status.scaling, self.now)
        self.status.scaling = plan.scaling
        # Services first: the external ones' node ports / load balancer hosts go into the ConfigMap
        # (external.properties) before any broker that advertises them starts.
        objects = desired.desired_objects(self.ref, self.spec, plan.statefulset_replicas)
        self.external = {}
        for obj in objects:
            if obj["kind"] == "Service":
                self._note_external(await self.kube.apply(obj))
        certs = await self.certificates(plan.statefulset_replicas)
        objects = desired.desired_objects(self.ref, self.spec, plan.statefulset_replicas, self.external, certs)
        for obj in objects:
            if obj["kind"] == "Service":
                continue
            applied = await self.kube.apply(obj)
            if obj["kind"] == "StatefulSet":
                self.sts = applied
        pending = sorted(b for b in range(plan.statefulset_replicas) if b not in self.external)
        if self.spec.listeners.external is not None and pending:
            self.warning = (
                "ExternalAddressPending",
                f"brokers {pending}: their {self.spec.listeners.external.type} Service has no address yet; "
                "they wait for it before they start",
            )
        selector = f"tidelog.dev/cluster={self.ref.name},app.kubernetes.io/managed-by={MANAGED_BY}"
        await prune(
            self.kube, ns, selector, "Service", {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
        )
        self.status.replicas = plan.statefulset_replicas
        self.status.label_selector = self.ref.selector_string
        self.status.bootstrap_address = self.ref.bootstrap_address
        if plan.scaling and plan.scaling.phase == "Shrinking":
            await self.finish_shrink()

    def admin(self) -> AbstractAsyncContextManager[ClusterAdmin]:
        """A client of the brokers' admin API (with the cluster's token when it has one)."""
        target = self.ref.admin_bootstrap_address
        return self.admin_for(target, token=self.admin_token) if self.admin_token else self.admin_for(target)

    async def ensure_admin_token(self) -> None:
        """A secured cluster's admin API takes only calls with its bearer token: the Secret is made
        once (owned by the Cluster) and mounted into every broker (admin.token.file)."""
        existing = await self.kube.get("Secret", self.ref.namespace, self.ref.admin_token_secret)
        token = desired_tls.text(existing, "token")
        if not token:
            token = secrets.token_urlsafe(32)
            await self.kube.apply(desired_tls.admin_token_secret(self.ref, token))
        self.admin_token = token

    async def certificates(self, brokers: int) -> str | None:
        """The certificates of ``brokers`` brokers (secured listeners only); the pods' annotation."""
        if not desired_tls.secured(self.spec):
            self.status.certificates = None
            METRICS.forget_certificates(self.ref.namespace, self.ref.name)
            return None
        await self.ensure_admin_token()
        current = self.sts["spec"]["replicas"] if self.sts else 0
        try:
            outcome = await reconcile_certificates(
                self.kube, self.ref, self.spec, self.body, max(brokers, current), self.external,
                self.external_bootstrap, datetime.now(UTC),
            )  # fmt: skip
        except CertificatesPending as exc:
            raise Wait(exc.reason, exc.message, after=self.interval if exc.degraded else 10,
                       degraded=exc.degraded) from exc  # fmt: skip
        self.status.certificates = c = outcome.status
        for which, stamp in (("ca", c.ca_not_after), ("brokers", c.not_after)):
            when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp() if stamp else None
            METRICS.set_certificate_expiry(self.ref.namespace, self.ref.name, which, when)
        return outcome.annotation

    def _note_external(self, svc: dict[str, Any]) -> None:
        """Remember the address of an applied external Service (node port, or load balancer host)."""
        labels = svc["metadata"].get("labels") or {}
        ports = svc.get("spec", {}).get("ports") or [{}]
        ingress = (svc.get("status", {}).get("loadBalancer") or {}).get("ingress") or [{}]
        lb_host = ingress[0].get("ip") or ingress[0].get("hostname")
        node_port = ports[0].get("nodePort")
        if labels.get(COMPONENT_LABEL) == "external-bootstrap":
            self.external_bootstrap = desired.ExternalAddress(node_port, lb_host)
            return
        if labels.get(COMPONENT_LABEL) != "external" or "tidelog.dev/broker-id" not in labels:
            return
        broker = int(labels["tidelog.dev/broker-id"])
        if svc["spec"].get("type") == "LoadBalancer":
            if lb_host:
                self.external[broker] = desired.ExternalAddress(host=lb_host)
        elif node_port:
            self.external[broker] = desired.ExternalAddress(node_port=int(node_port))

    def _external_address(self, broker: int, pod: dict[str, Any] | None) -> str | None:
        address = self.external.get(broker)
        if address is None:
            return None
        if address.host is not None:
            return f"{address.host}:{EXTERNAL_PORT}"
        node = (pod or {}).get("status", {}).get("hostIP")
        return f"{node}:{address.node_port}" if node else None

    async def brokers_ready(self) -> None:
        pods = await self.kube.list("Pod", self.ref.namespace, self.ref.selector_string)
        self.pods = {}
        for p in pods:
            try:
                self.pods[int(p["metadata"]["name"].rsplit("-", 1)[1])] = p
            except ValueError:
                continue
        want = self.status.replicas or 0
        ready = sorted(i for i, p in self.pods.items() if i < want and _pod_ready(p))
        self.status.ready_replicas = len(ready)
        self.status.brokers = [
            BrokerStatus(
                id=i,
                address=self.ref.broker_address(i),
                ready=i in ready,
                external_address=self._external_address(i, self.pods.get(i)),
            )
            for i in range(want)
        ]
        self.status.external_bootstrap_address = self._external_bootstrap_address()
        if len(ready) < want:
            self._check_roll_timeout()
            replaced = await self._replace_stuck_stale_pods(want, ready)
            extra = f"; restarting stale, unready brokers {replaced}" if replaced else ""
            raise Wait("WaitingForBrokers", f"{len(ready)}/{want} brokers ready{extra}")

    def _external_bootstrap_address(self) -> str | None:
        b = self.external_bootstrap
        if b is None or self.spec.listeners.external is None:
            return None
        if b.host is not None:
            return f"{b.host}:{EXTERNAL_PORT}"
        nodes = sorted({p["status"]["hostIP"] for p in self.pods.values() if p.get("status", {}).get("hostIP")})
        return f"{nodes[0]}:{b.node_port}" if nodes and b.node_port else None

    async def _replace_stuck_stale_pods(self, want: int, ready: list[int]) -> list[int]:
        """A broker that is not Ready and runs an old template (a bad config that made it crash, say)
        serves nothing: restarting it on the current template cannot hurt availability."""
        if self.sts is None:
            return []
        target = self.sts["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION]
        stuck = [i for i, p in self.pods.items() if i < want and i not in ready and not p["metadata"].get(
            "deletionTimestamp") and _pod_hash(p) != target]  # fmt: skip
        for i in stuck:
            await self.kube.delete("Pod", self.ref.namespace, self.ref.pod(i))
            log.info(
                "%s/%s: broker %d is not Ready on an old template: restarted", self.ref.namespace, self.ref.name, i
            )
        return stuck

    def _check_roll_timeout(self) -> None:
        roll = self.status.roll
        if roll and roll.current is not None and _seconds_since(roll.started_at) > BROKER_BACK_TIMEOUT_S:
            msg = f"broker {roll.current} did not come back after its restart; the roll stopped"
            roll.phase, roll.message = "Blocked", msg
            raise Wait("BrokerNotBack", msg, after=30, degraded=True)

    async def describe(self) -> None:
        try:
            async with self.admin() as admin:
                self.cluster = await admin.describe_cluster()
        except Exception as exc:  # unreachable, or a broker still starting its admin service
            raise Wait("AdminUnavailable", str(exc)) from exc
        c = self.cluster
        self.status.controller_id = c.controller_id if c.controller_id >= 0 else None
        self.status.under_replicated_partitions = c.under_replicated
        self.status.offline_partitions = c.offline
        self.status.version = self.spec.version
        alive = {b.id: b for b in c.brokers if b.alive}
        for b in self.status.brokers:
            desc = alive.get(b.id)
            b.ready = b.ready and desc is not None
            if desc is not None:
                b.address, b.rack = f"{desc.host}:{desc.port}", desc.rack
        missing = [b.id for b in self.status.brokers if b.id not in alive]
        if missing:
            raise Wait("WaitingForBrokers", f"brokers {missing} not registered in the cluster yet")

    async def scale_up(self) -> None:
        s = self.status.scaling
        if s is None or s.phase not in ("AwaitingBrokers", "Rebalancing"):
            return
        async with self.admin() as admin:
            if s.phase == "AwaitingBrokers":
                plan = await admin.rebalance()
                log.info(
                    "%s/%s: rebalance after adding brokers %s: %d partitions moving, %d leader changes",
                    self.ref.namespace,
                    self.ref.name,
                    s.brokers,
                    len(plan.moves),
                    plan.leader_changes,
                )
                s.phase, s.message = "Rebalancing", f"rebalance started: {len(plan.moves)} partitions moving"
                raise Wait("Rebalancing", s.message)
            moving = await admin.list_reassignments()
            if not moving:
                topics = [await admin.describe_topic(t) for t in await admin.list_topics()]
        if moving:
            raise Wait("Rebalancing", f"rebalance: {len(moving)} partitions still moving")
        placement = [p.replicas for t in topics for p in t.partitions]
        if rebalance_missed(placement, s.brokers, len(self.status.brokers)):
            # answered by a broker that did not see the new ones yet: plan again
            s.phase, s.message = "AwaitingBrokers", f"brokers {s.brokers} got no replicas: rebalancing again"
            raise Wait("Rebalancing", s.message)
        self.status.scaling = None

    async def scale_down(self) -> None:
        s = self.status.scaling
        if s is None or s.phase not in ("Draining", "Verifying", "Blocked"):
            return
        remaining = s.to_replicas or 0
        async with self.admin() as admin:
            topics = [await admin.describe_topic(t) for t in await admin.list_topics()]
            rfs = {t.name: max((len(p.replicas) - len(p.adding) for p in t.partitions), default=0) for t in topics}
            blocker = drain_blocker(remaining, rfs)
            if blocker:
                s.phase, s.message, self.warning = "Blocked", blocker, ("ScaleDownBlocked", blocker)
                return  # nothing removed; everything else still reconciled
            holding = [b for b in s.brokers if any(b in p.replicas for t in topics for p in t.partitions)]
            moving = await admin.list_reassignments()
            if holding and not moving:
                placement = {(t.name, p.partition): list(p.replicas) for t in topics for p in t.partitions}
                moves = evacuation_moves(placement, s.brokers, range(remaining))
                await admin.reassign([Move(t, i, r) for (t, i), r in moves.items()])
                log.info("%s/%s: draining brokers %s: %d partitions moving", self.ref.namespace, self.ref.name,
                         holding, len(moves))  # fmt: skip
                s.phase, s.message = "Verifying", f"draining brokers {holding}: {len(moves)} partitions moving"
                raise Wait("Draining", s.message)
            if holding or moving:
                s.phase, s.message = "Verifying", f"brokers {holding} still hold replicas ({len(moving)} moving)"
                raise Wait("Draining", s.message)
        s.phase, s.message = "Shrinking", f"brokers {s.brokers} hold nothing: removing them"
        await self.plan_and_apply()
        raise Wait("Shrinking", s.message)

    async def finish_shrink(self) -> None:
        s = self.status.scaling
        assert s is not None
        gone = all(b not in self.pods for b in s.brokers) if self.pods else False
        if not gone:
            pods = await self.kube.list("Pod", self.ref.namespace, self.ref.selector_string)
            names = {p["metadata"]["name"] for p in pods}
            gone = all(self.ref.pod(b) not in names for b in s.brokers)
        if gone:
            if self.spec.storage.delete_claim:
                for b in s.brokers:
                    await self.kube.delete("PersistentVolumeClaim", self.ref.namespace, self.ref.pvc(b))
            self.status.scaling = None

    async def roll(self) -> None:
        if self.status.scaling is not None or self.sts is None:
            return
        target = self.sts["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION]
        want = self.sts["spec"]["replicas"]
        stale = [i for i, p in self.pods.items() if i < want and _pod_hash(p) != target]
        roll = self.status.roll
        if not stale:
            self.status.roll = None
            return
        if roll is None or roll.target_hash != target:
            roll = self.status.roll = RollStatus(phase="Rolling", target_hash=target, started_at=self.now)
        roll.pending = roll_order(stale, self.status.controller_id)
        nxt = roll.pending[0]
        async with self.admin() as admin:
            check = await admin.can_restart(nxt)
        if not check.ok:
            roll.message = f"broker {nxt} waits: " + "; ".join(check.reasons[:3])
            raise Wait("RollWaiting", roll.message, after=5)
        await self.kube.delete("Pod", self.ref.namespace, self.ref.pod(nxt))
        log.info("%s/%s: rolling: restarted broker %d (then %s)", self.ref.namespace, self.ref.name, nxt,
                 roll.pending[1:])  # fmt: skip
        roll.current, roll.started_at, roll.phase = nxt, self.now, "Rolling"
        roll.message = f"restarting broker {nxt}; {len(roll.pending) - 1} more after it"
        raise Wait("Rolling", roll.message)

    async def topics(self) -> None:
        async with self.admin() as admin:
            failed = await reconcile_topics(self.kube, admin, self.ref.namespace, self.ref.name, self.now)
        if failed:
            self.warning = self.warning or (
                "TopicsFailing",
                f"{failed} Topic(s) failed to reconcile (see their status)",
            )

    async def users(self) -> None:
        internal = self.spec.listeners.internal
        sasl, tls = internal.authentication == "scram-sha-512", internal.tls
        protocol = ("SASL_" if sasl else "") + ("SSL" if tls else "PLAINTEXT")
        cluster = {
            "metadata": self.body["metadata"],
            "status": {"bootstrapAddress": self.status.bootstrap_address},
            "securityProtocol": protocol,
            "renewBeforeDays": self.spec.certificates.renew_before_days,
            "validityDays": self.spec.certificates.validity_days,
        }
        async with self.admin() as admin:
            failed = await reconcile_users(self.kube, admin, cluster, self.now)
        if failed:
            self.warning = self.warning or ("UsersFailing", f"{failed} User(s) failed to reconcile (see their status)")


def _pod_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _pod_hash(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(HASH_ANNOTATION)


async def reconcile_cluster(
    kube: Kube, admin_for: AdminFactory, body: dict[str, Any], image_repository: str, interval: float
) -> Outcome:
    """One pass of the runbook for the Cluster ``body`` (re-read by the caller)."""
    return await Pass(kube, admin_for, body, image_repository, interval).run()


__all__ = ["KAFKA_PORT", "AdminFactory", "Outcome", "Pass", "Wait", "reconcile_cluster"]
