"""The reconcile runbook (operator/reconcile.py, topics.py, decisions.py) without a cluster: the pure
decisions on their own, then whole passes against an in-memory Kubernetes and a fake admin API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tidelog.broker.admin.model import (
    BrokerDesc,
    ClusterDesc,
    Move,
    PartitionDesc,
    Plan,
    ReassignmentDesc,
    RestartCheck,
    TopicDesc,
)
from tidelog.operator import desired, schema
from tidelog.operator.decisions import (
    drain_blocker,
    evacuation_moves,
    plan_scaling,
    rebalance_missed,
    roll_order,
    set_condition,
    status_patch,
    topic_owners,
)
from tidelog.operator.models import ClusterSpec, ClusterStatus, ScalingStatus
from tidelog.operator.names import HASH_ANNOTATION, ClusterRef
from tidelog.operator.reconcile import Pass
from tidelog.operator.topics import delete_topic

NOW = "2026-11-25T10:00:00Z"
REF = ClusterRef("demo", "ns", "uid-1")


# ----- pure decisions -----


def test_conditions_keep_their_transition_time_until_the_status_changes() -> None:
    conds = set_condition([], "Ready", False, "WaitingForBrokers", "0/3", "t1", 1)
    conds = set_condition(conds, "Ready", False, "WaitingForBrokers", "1/3", "t2", 1)
    assert conds[0].last_transition_time == "t1"
    assert conds[0].message == "1/3"
    conds = set_condition(conds, "Ready", True, "Ready", "3 ready", "t3", 2)
    assert (conds[0].status, conds[0].last_transition_time, conds[0].observed_generation) == ("True", "t3", 2)


def test_scale_up_is_immediate_and_scale_down_waits_for_the_drain() -> None:
    assert plan_scaling(3, None, None, NOW).statefulset_replicas == 3
    up = plan_scaling(5, 3, None, NOW)
    assert up.statefulset_replicas == 5
    assert up.scaling is not None
    assert (up.scaling.phase, up.scaling.brokers) == ("AwaitingBrokers", [3, 4])
    down = plan_scaling(3, 5, None, NOW)
    assert down.statefulset_replicas == 5
    assert down.scaling is not None
    assert (down.scaling.phase, down.scaling.brokers) == ("Draining", [3, 4])
    # the progress block (from status) carries on; Shrinking lets the StatefulSet shrink
    assert plan_scaling(3, 5, down.scaling, NOW).scaling is down.scaling
    shrinking = ScalingStatus(phase="Shrinking", from_replicas=5, to_replicas=3, brokers=[3, 4])
    assert plan_scaling(3, 5, shrinking, NOW).statefulset_replicas == 3
    # a scale-down cancelled before it shrank: back to nothing to do
    assert plan_scaling(5, 5, down.scaling, NOW).scaling is None


def test_evacuation_never_lands_on_a_leaving_broker() -> None:
    placement = {("t", 0): [4, 3, 0], ("t", 1): [1, 2, 3], ("t", 2): [0, 1, 2]}
    moves = evacuation_moves(placement, [3, 4], range(3))
    assert set(moves) == {("t", 0), ("t", 1)}
    for replicas in moves.values():
        assert not {3, 4} & set(replicas)
        assert len(set(replicas)) == 3
    assert moves[("t", 1)][:2] == [1, 2]  # untouched replicas keep their place (leader stays)
    with pytest.raises(ValueError, match="no broker left"):
        evacuation_moves({("t", 0): [0, 1, 2, 3]}, [3], range(3))


def test_a_rebalance_that_left_a_new_broker_empty_is_redone() -> None:
    placement = [[0, 1, 2]] * 6
    assert rebalance_missed(placement, [3, 4], 5)
    assert not rebalance_missed([[3, 1, 2], [4, 0, 1], *[[0, 1, 2]] * 4], [3, 4], 5)
    assert not rebalance_missed([[0, 1, 2]], [3], 4)  # too few replicas to give every broker one


def test_drain_blocker_names_the_topics_too_big_for_the_remaining_brokers() -> None:
    assert drain_blocker(3, {"a": 3, "b": 1}) is None
    msg = drain_blocker(3, {"a": 3, "big": 5})
    assert msg is not None
    assert "big (RF 5)" in msg
    assert "a (RF" not in msg


def test_roll_goes_highest_ordinal_first_and_the_controller_last() -> None:
    assert roll_order([0, 1, 2, 3], controller_id=2) == [3, 1, 0, 2]
    assert roll_order([1], controller_id=None) == [1]


def test_the_oldest_topic_resource_owns_a_topic() -> None:
    def topic(name: str, uid: str, created: str, topic_name: str | None = None) -> dict[str, Any]:
        spec = {"topicName": topic_name} if topic_name else {}
        return {"metadata": {"name": name, "uid": uid, "creationTimestamp": created}, "spec": spec}

    owners = topic_owners([topic("b", "u2", "2026-02"), topic("a", "u1", "2026-03", "b"), topic("c", "u3", "2026-01")])
    assert owners == {"b": "u2", "c": "u3"}


def test_status_patch_removes_finished_blocks() -> None:
    patch = status_patch(ClusterStatus(replicas=3))
    assert patch["replicas"] == 3
    assert patch["scaling"] is None
    assert patch["roll"] is None


# ----- fakes -----


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.deleted: list[tuple[str, str]] = []
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        self.objects[key] = obj
        return obj

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    async def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        wanted = dict(kv.split("=", 1) for kv in selector.split(",") if kv)
        return [
            o
            for (k, ns, _), o in self.objects.items()
            if k == kind and ns == namespace and wanted.items() <= (o["metadata"].get("labels") or {}).items()
        ]

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        self.deleted.append((kind, name))
        return self.objects.pop((kind, namespace, name), None) is not None

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses[(kind, name)] = status

    def add_pods(self, count: int, hash_: str | None = None) -> None:
        sts = self.objects[("StatefulSet", "ns", "demo")]
        digest = hash_ or sts["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION]
        for i in range(count):
            self.objects[("Pod", "ns", f"demo-{i}")] = {
                "metadata": {"name": f"demo-{i}", "labels": REF.selector_labels(),
                             "annotations": {HASH_ANNOTATION: digest}},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }  # fmt: skip


class FakeAdmin:
    def __init__(self, brokers: int) -> None:
        self.brokers = brokers
        self.controller = 0
        self.topics: dict[str, TopicDesc] = {}
        self.calls: list[str] = []
        self.refuse_restart: set[int] = set()

    @asynccontextmanager
    async def connect(self, _target: str) -> AsyncIterator[FakeAdmin]:
        yield self

    def add_topic(self, name: str, placement: list[list[int]]) -> None:
        parts = [PartitionDesc(i, r[0], 0, list(r), list(r), [], []) for i, r in enumerate(placement)]
        self.topics[name] = TopicDesc(name, f"id-{name}", {}, parts)

    async def describe_cluster(self) -> ClusterDesc:
        brokers = [BrokerDesc(i, f"demo-{i}", 9092, None, True, "RUNNING") for i in range(self.brokers)]
        return ClusterDesc("c", self.controller, brokers, 0, 0)

    async def list_topics(self) -> list[str]:
        return sorted(self.topics)

    async def describe_topic(self, name: str) -> TopicDesc:
        if name not in self.topics:
            err = RuntimeError(name)
            err.error_code = 3  # type: ignore[attr-defined]
            raise err
        return self.topics[name]

    async def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str],
        assignment: list[list[int]] | None = None,
        validate_only: bool = False,
    ) -> TopicDesc:
        self.calls.append(f"create {name} {partitions} {replication_factor}")
        self.add_topic(name, [[(i + j) % self.brokers for j in range(replication_factor)] for i in range(partitions)])
        self.topics[name].configs = dict(configs)
        return self.topics[name]

    async def alter_topic(self, name: str, *, partitions: int | None = None, replication_factor: int | None = None,
                          set_configs: dict[str, str] | None = None,
                          delete_configs: list[str] | None = None) -> TopicDesc:  # fmt: skip
        self.calls.append(f"alter {name} partitions={partitions} rf={replication_factor} set={set_configs}")
        self.topics[name].configs.update(set_configs or {})
        return self.topics[name]

    async def delete_topic(self, name: str) -> None:
        self.calls.append(f"delete {name}")
        self.topics.pop(name)

    async def reassign(self, moves: list[Move], throttle_bytes_per_s: int | None = None) -> None:
        self.calls.append(f"reassign {len(moves)}")
        for m in moves:  # done at once
            p = self.topics[m.topic].partitions[m.partition]
            p.replicas, p.isr, p.leader = list(m.replicas), list(m.replicas), m.replicas[0]

    async def list_reassignments(self) -> list[ReassignmentDesc]:
        return []

    async def drain(self, broker_id: int) -> Plan:
        raise AssertionError("the runbook moves replicas itself (one plan for every leaving broker)")

    async def rebalance(self) -> Plan:
        self.calls.append("rebalance")
        return Plan([], 0)

    async def can_restart(self, broker_id: int) -> RestartCheck:
        ok = broker_id not in self.refuse_restart
        return RestartCheck(broker_id, ok, [] if ok else ["t-0: ISR would drop below min.insync.replicas"])


def cluster_body(kube: FakeKube, **spec: Any) -> dict[str, Any]:
    body = {"metadata": {"name": "demo", "namespace": "ns", "uid": "uid-1", "generation": 1},
            "spec": {"replicas": 3, **spec}}  # fmt: skip
    status = kube.statuses.get(("Cluster", "demo"))
    if status:
        body["status"] = status
    return body


def run_pass(kube: FakeKube, admin: FakeAdmin, **spec: Any) -> Pass:
    p = Pass(kube, admin.connect, cluster_body(kube, **spec), "tidelog/broker", 60.0)
    asyncio.run(p.run())
    return p


def cond(kube: FakeKube, type_: str, kind: str = "Cluster", name: str = "demo") -> dict[str, Any]:
    return next(c for c in kube.statuses[(kind, name)]["conditions"] if c["type"] == type_)


def sts_replicas(kube: FakeKube) -> int:
    return int(kube.objects[("StatefulSet", "ns", "demo")]["spec"]["replicas"])


# ----- whole passes -----


def test_a_new_cluster_is_applied_then_waits_for_its_brokers_then_is_ready() -> None:
    kube, admin = FakeKube(), FakeAdmin(3)
    run_pass(kube, admin)
    kinds = {k for (k, _, _) in kube.objects}
    assert {"StatefulSet", "Service", "ConfigMap", "Role", "RoleBinding", "ServiceAccount"} <= kinds
    assert kube.objects[("StatefulSet", "ns", "demo")]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "tidelog/broker:0.1.0"
    )
    assert (cond(kube, "Ready")["status"], cond(kube, "Ready")["reason"]) == ("False", "WaitingForBrokers")
    kube.add_pods(3)
    run_pass(kube, admin)
    status = kube.statuses[("Cluster", "demo")]
    assert cond(kube, "Ready")["status"] == "True"
    assert cond(kube, "Reconciling")["status"] == "False"
    assert status["readyReplicas"] == 3
    assert status["controllerId"] == 0
    assert status["observedGeneration"] == 1
    assert status["bootstrapAddress"] == "demo.ns.svc:9092"
    assert len(status["brokers"]) == 3


class NodePortKube(FakeKube):
    """Allocates node ports for NodePort Services without one, as the API server does."""

    next_port = 31700

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "Service" and obj["spec"].get("type") == "NodePort":
            old = self.objects.get(("Service", "ns", obj["metadata"]["name"]))
            for i, port in enumerate(obj["spec"]["ports"]):
                if "nodePort" not in port:
                    port["nodePort"] = old["spec"]["ports"][i]["nodePort"] if old else self.next_port
                    self.next_port += 0 if old else 1
        return await super().apply(obj)


def test_external_node_ports_reach_the_brokers_config_and_status() -> None:
    kube, admin = NodePortKube(), FakeAdmin(3)
    external = {"external": {"type": "NodePort"}}
    run_pass(kube, admin, listeners=external)
    lines = kube.objects[("ConfigMap", "ns", "demo-config")]["data"]["external.properties"].splitlines()
    ports = {kube.objects[("Service", "ns", f"demo-{b}-external")]["spec"]["ports"][0]["nodePort"] for b in range(3)}
    assert sorted(line for line in lines if line.startswith("broker.")) == sorted(
        f"broker.{b}.port={kube.objects[('Service', 'ns', f'demo-{b}-external')]['spec']['ports'][0]['nodePort']}"
        for b in range(3)
    )
    assert len(ports) == 3
    kube.add_pods(3)
    for i in range(3):
        kube.objects[("Pod", "ns", f"demo-{i}")]["status"]["hostIP"] = "10.0.0.9"
    run_pass(kube, admin, listeners=external)
    status = kube.statuses[("Cluster", "demo")]
    boot = kube.objects[("Service", "ns", "demo-external-bootstrap")]["spec"]["ports"][0]["nodePort"]
    assert status["externalBootstrapAddress"] == f"10.0.0.9:{boot}"
    assert {b["externalAddress"] for b in status["brokers"]} == {f"10.0.0.9:{p}" for p in ports}
    assert cond(kube, "Warning")["status"] == "False"


def test_a_load_balancer_without_an_address_is_a_warning() -> None:
    kube, admin = FakeKube(), FakeAdmin(3)
    run_pass(kube, admin, listeners={"external": {"type": "LoadBalancer"}})
    warning = cond(kube, "Warning")
    assert (warning["status"], warning["reason"]) == ("True", "ExternalAddressPending")
    assert "brokers [0, 1, 2]" in warning["message"]
    ingress = {"loadBalancer": {"ingress": [{"hostname": "lb-1.example"}]}}
    kube.objects[("Service", "ns", "demo-1-external")]["status"] = ingress
    real_apply = kube.apply

    async def keep_status(obj: dict[str, Any]) -> dict[str, Any]:  # the API server keeps status on apply
        old = kube.objects.get((obj["kind"], "ns", obj["metadata"]["name"]))
        out = await real_apply(obj)
        if old is not None and "status" in old:
            out["status"] = old["status"]
        return out

    kube.apply = keep_status  # type: ignore[method-assign]
    run_pass(kube, admin, listeners={"external": {"type": "LoadBalancer"}})
    assert (
        "broker.1.host=lb-1.example" in kube.objects[("ConfigMap", "ns", "demo-config")]["data"]["external.properties"]
    )
    assert "brokers [0, 2]" in cond(kube, "Warning")["message"]


def test_an_invalid_spec_is_degraded_and_nothing_is_applied() -> None:
    kube, admin = FakeKube(), FakeAdmin(3)
    run_pass(kube, admin, config={"broker.id": "7"})
    assert cond(kube, "Degraded")["reason"] == "InvalidSpec"
    assert not kube.objects


def test_topics_are_created_adopted_grown_and_conflicts_reported() -> None:
    kube, admin = FakeKube(), FakeAdmin(3)
    run_pass(kube, admin)
    kube.add_pods(3)
    admin.add_topic("adopted", [[0, 1, 2]])
    admin.topics["adopted"].configs["retention.ms"] = "1"  # drift, reverted
    topics: dict[str, tuple[dict[str, Any], str, dict[str, str]]] = {
        "orders": ({"partitions": 6, "replicas": 3}, "2026-01-01T00:00:00Z", {}),
        "adopted": ({"partitions": 2, "replicas": 3, "config": {"retention.ms": 1000}}, "2026-01-01T00:00:00Z", {}),
        "dup": ({"partitions": 1, "replicas": 1, "topicName": "orders"}, "2026-02-01T00:00:00Z", {}),
        "left-alone": ({"partitions": 1, "replicas": 1}, "2026-01-01T00:00:00Z", {"tidelog.dev/managed": "false"}),
    }
    for name, (spec, created, notes) in topics.items():
        kube.objects[("Topic", "ns", name)] = {
            "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "creationTimestamp": created,
                         "generation": 1, "annotations": notes},
            "spec": {"clusterRef": {"name": "demo"}, **spec},
        }  # fmt: skip
    run_pass(kube, admin)
    assert "create orders 6 3" in admin.calls
    assert not any("left-alone" in c for c in admin.calls)
    assert "alter adopted partitions=2 rf=None set={'retention.ms': '1000'}" in admin.calls
    assert cond(kube, "Ready", "Topic", "orders")["status"] == "True"
    assert kube.statuses[("Topic", "orders")]["partitions"] == 6
    assert cond(kube, "Ready", "Topic", "dup")["reason"] == "ResourceConflict"
    assert cond(kube, "Ready", "Topic", "left-alone")["reason"] == "Unmanaged"
    # the conflict loser's finalizer keeps the topic; the owner's deletes it
    asyncio.run(delete_topic(kube, admin, kube.objects[("Topic", "ns", "dup")]))
    assert "orders" in admin.topics
    asyncio.run(delete_topic(kube, admin, kube.objects[("Topic", "ns", "orders")]))
    assert "orders" not in admin.topics


def test_partitions_never_shrink_and_a_replication_factor_change_is_a_reassignment() -> None:
    kube, admin = FakeKube(), FakeAdmin(3)
    run_pass(kube, admin)
    kube.add_pods(3)
    admin.add_topic("t", [[0, 1], [1, 2], [2, 0]])
    meta = {"name": "t", "namespace": "ns", "uid": "u-t", "generation": 1}
    kube.objects[("Topic", "ns", "t")] = {"metadata": meta, "spec": {"clusterRef": {"name": "demo"}, "partitions": 2,
                                                                     "replicas": 2}}  # fmt: skip
    run_pass(kube, admin)
    assert cond(kube, "Ready", "Topic", "t")["reason"] == "NotSupported"
    kube.objects[("Topic", "ns", "t")]["spec"].update(partitions=3, replicas=3)
    run_pass(kube, admin)
    assert "alter t partitions=None rf=3 set=None" in admin.calls


def test_scale_up_rebalances_once_the_new_brokers_are_in() -> None:
    kube, admin = FakeKube(), FakeAdmin(3)
    run_pass(kube, admin)
    kube.add_pods(3)
    run_pass(kube, admin)
    run_pass(kube, admin, replicas=5)
    assert sts_replicas(kube) == 5
    assert kube.statuses[("Cluster", "demo")]["scaling"]["phase"] == "AwaitingBrokers"
    kube.add_pods(5)
    admin.brokers = 5
    run_pass(kube, admin, replicas=5)
    assert admin.calls == ["rebalance"]
    assert kube.statuses[("Cluster", "demo")]["scaling"]["phase"] == "Rebalancing"
    run_pass(kube, admin, replicas=5)
    assert kube.statuses[("Cluster", "demo")]["scaling"] is None
    assert cond(kube, "Ready")["status"] == "True"


def test_scale_down_drains_verifies_then_shrinks() -> None:
    kube, admin = FakeKube(), FakeAdmin(5)
    run_pass(kube, admin, replicas=5)
    kube.add_pods(5)
    admin.add_topic("t", [[4, 3, 0], [1, 2, 3], [0, 1, 2]])
    run_pass(kube, admin, replicas=5)
    run_pass(kube, admin, replicas=3)
    assert sts_replicas(kube) == 5  # nothing removed before the drain
    assert admin.calls == ["reassign 2"]
    assert all(not {3, 4} & set(p.replicas) for p in admin.topics["t"].partitions)
    run_pass(kube, admin, replicas=3)  # verified empty -> shrink
    assert sts_replicas(kube) == 3
    assert kube.statuses[("Cluster", "demo")]["scaling"]["phase"] == "Shrinking"
    for i in (3, 4):
        del kube.objects[("Pod", "ns", f"demo-{i}")]
    admin.brokers = 3
    run_pass(kube, admin, replicas=3)
    assert kube.statuses[("Cluster", "demo")]["scaling"] is None
    assert cond(kube, "Ready")["status"] == "True"


def test_an_impossible_drain_warns_and_removes_nothing() -> None:
    kube, admin = FakeKube(), FakeAdmin(5)
    run_pass(kube, admin, replicas=5)
    kube.add_pods(5)
    admin.add_topic("wide", [[0, 1, 2, 3, 4]])
    run_pass(kube, admin, replicas=3)
    run_pass(kube, admin, replicas=3)
    assert sts_replicas(kube) == 5
    assert not admin.calls
    warning = cond(kube, "Warning")
    assert warning["status"] == "True"
    assert "wide (RF 5)" in warning["message"]
    assert kube.statuses[("Cluster", "demo")]["scaling"]["phase"] == "Blocked"
    run_pass(kube, admin, replicas=5)  # the user takes the scale-down back
    assert kube.statuses[("Cluster", "demo")].get("scaling") is None
    assert cond(kube, "Warning")["status"] == "False"
    assert cond(kube, "Ready")["status"] == "True"


def test_a_config_change_rolls_one_broker_at_a_time_controller_last_and_only_when_safe() -> None:
    kube, admin = FakeKube(), FakeAdmin(3)
    run_pass(kube, admin)
    kube.add_pods(3, hash_="old")
    admin.controller = 2
    admin.refuse_restart = {1}
    run_pass(kube, admin)
    assert not kube.deleted
    assert cond(kube, "Reconciling")["reason"] == "RollWaiting"
    admin.refuse_restart = set()
    run_pass(kube, admin)
    assert kube.deleted == [("Pod", "demo-1")]  # highest ordinal that is not the controller
    run_pass(kube, admin)  # demo-1 is gone: wait for it
    assert kube.deleted == [("Pod", "demo-1")]
    assert cond(kube, "Reconciling")["reason"] == "WaitingForBrokers"
    sts = kube.objects[("StatefulSet", "ns", "demo")]
    digest = sts["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION]
    kube.add_pods(3, hash_="old")
    kube.objects[("Pod", "ns", "demo-1")]["metadata"]["annotations"][HASH_ANNOTATION] = digest
    run_pass(kube, admin)
    assert kube.deleted[-1] == ("Pod", "demo-0")
    kube.add_pods(3)  # all on the new template
    run_pass(kube, admin)
    assert kube.statuses[("Cluster", "demo")]["roll"] is None
    assert cond(kube, "Ready")["status"] == "True"


def test_desired_objects_follow_the_planned_replicas() -> None:
    spec = schema.load(ClusterSpec, {"replicas": 3})
    sts = next(o for o in desired.desired_objects(REF, spec, 5) if o["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 5


def test_an_unready_broker_on_an_old_template_is_restarted_at_once() -> None:
    kube, admin = FakeKube(), FakeAdmin(3)
    run_pass(kube, admin)
    kube.add_pods(3, hash_="bad-config")
    kube.objects[("Pod", "ns", "demo-2")]["status"] = {"conditions": [{"type": "Ready", "status": "False"}]}
    run_pass(kube, admin)
    assert kube.deleted == [("Pod", "demo-2")]  # the Ready ones wait for the roll and its checks
    assert "restarting stale, unready brokers [2]" in cond(kube, "Reconciling")["message"]
