"""The operator on a real cluster, in order (each step needs the ones before it):

helm install (the operator, watching this test's namespace) -> a 3-broker Cluster -> Ready -> a Topic
(6 partitions, RF 3) -> its status -> librdkafka produces and consumes through the bootstrap Service
-> a real Prometheus (on the host) scrapes the brokers and the operator; PromQL gives bytes in per
topic and a consumer group's lag -> a client outside Kubernetes (the host, no cluster DNS) produces
and consumes through the external NodePort listener -> scale to 5: the new brokers get partitions -> back to 3: drained,
then removed, every acked record still readable -> delete a partition leader's pod: failover, nothing
lost -> a config change rolls the brokers one at a time with no partition under min ISR (checked
during the roll) -> bad manifests rejected or reported.

The client runs on the host in a private mount namespace whose /etc/resolv.conf points at the
cluster's DNS (kafka_cluster_client.py), so the brokers' advertised names resolve. The local
provider's hostPath volumes ignore fsGroup: a background thread gives each new volume of this
namespace to the broker's uid (10001), as a CSI driver honouring fsGroup would.
Each step's wall time is printed at the end (and written to $E2E_TIMINGS if set).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient as KafkaAdmin
from e2e_kube import Kube, run_prometheus, wait_until, write_file_sd  # type: ignore[import-not-found]
from operator_release import TAG, Steps, operator_release  # type: ignore[import-not-found]

from tidelog.broker.admin.client import AdminClient

CLIENT = Path(__file__).resolve().parent / "kafka_cluster_client.py"
DNS = os.environ.get("E2E_CLUSTER_DNS", "169.254.20.10")
Step = Steps("operator e2e", "E2E_TIMINGS")


def cluster_manifest(replicas: int, config: dict[str, Any] | None = None) -> str:
    conf = {"default.replication.factor": 3, "offsets.topic.replication.factor": 3, **(config or {})}
    return json.dumps({
        "apiVersion": "tidelog.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "demo"},
        "spec": {"replicas": replicas, "version": TAG, "imagePullPolicy": "Never", "storage": {"size": "1Gi"},
                 "listeners": {"external": {"type": "NodePort"}}, "config": conf},
    })  # fmt: skip


TOPIC = json.dumps({
    "apiVersion": "tidelog.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "orders"},
    "spec": {"clusterRef": {"name": "demo"}, "partitions": 6, "replicas": 3, "config": {"min.insync.replicas": "2"}},
})  # fmt: skip


@pytest.fixture(scope="module")
def operator(kube: Kube) -> Iterator[Kube]:
    with operator_release(kube, release_name(kube), Step, [["topic", "--all"], ["cluster", "--all"]]) as k:
        yield k


def release_name(kube: Kube) -> str:
    return f"op-{kube.namespace}"


def with_cluster_dns(kube: Kube, *argv: str) -> Any:
    """Run argv (a Python client) with the cluster's DNS in /etc/resolv.conf; its JSON answer."""
    resolv = Path(f"/tmp/tidelog-e2e-resolv-{kube.namespace}.conf")  # noqa: S108
    resolv.write_text(f"nameserver {DNS}\nsearch cluster.local\noptions ndots:5\n")
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(resolv), *argv],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"client {argv[1:3]} failed: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def client(kube: Kube, *args: str) -> list[str]:
    """Run kafka_cluster_client.py with the cluster's DNS; its JSON answer."""
    result: list[str] = with_cluster_dns(kube, sys.executable, str(CLIENT), *args)
    return result


# A consumer group (one member: every partition) reads COUNT records of TOPIC (subscribe, librdkafka),
# commits its position on every partition (the low watermark where it has read nothing yet) and
# leaves; prints each partition's committed offset and high watermark (JSON).
COMMIT_SOME = """
import json, sys, time
from confluent_kafka import Consumer, TopicPartition
bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False})
consumer.subscribe([topic])
read, deadline = 0, time.monotonic() + 90
while read < count and time.monotonic() < deadline:
    msg = consumer.poll(1.0)
    if msg is not None and msg.error() is None:
        read += 1
if read < count:
    sys.exit(f"read only {read} of {count} records")
parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts}
positions = consumer.position([TopicPartition(topic, p) for p in parts])
offsets = [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else marks[tp.partition][0])
           for tp in positions]
consumer.commit(offsets=offsets, asynchronous=False)
committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
consumer.close()
print(json.dumps({"committed": {tp.partition: tp.offset for tp in committed},
                  "ends": {p: high for p, (_, high) in marks.items()}}))
"""


def bootstrap(kube: Kube) -> str:
    return f"demo.{kube.namespace}.svc:9092"


def status(kube: Kube, kind: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = kube.get(kind, name).get("status") or {}
    return result


def condition(kube: Kube, kind: str, name: str, type_: str) -> dict[str, Any]:
    return next((c for c in status(kube, kind, name).get("conditions", []) if c["type"] == type_), {})


def cluster_ready(kube: Kube, replicas: int) -> bool:
    s = status(kube, "cluster", "demo")
    ready = condition(kube, "cluster", "demo", "Ready").get("status") == "True"
    return ready and s.get("readyReplicas") == replicas and s.get("replicas") == replicas and not s.get("scaling")


def pod_ready(kube: Kube, broker: int) -> bool:
    ready = kube.out("get", "pod", f"demo-{broker}", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')
    return bool(ready == "True")


def pod_ip(kube: Kube, broker: int) -> str:
    ip: str = kube.out("get", "pod", f"demo-{broker}", "-o", "jsonpath={.status.podIP}")
    return ip


def describe_topic(kube: Kube, name: str = "orders") -> Any:
    async def go() -> Any:
        for b in range(5):
            ip = pod_ip(kube, b)
            if not ip:
                continue
            try:
                async with AdminClient(f"{ip}:9093", timeout=5) as admin:
                    return await admin.describe_topic(name)
            except Exception as exc:
                if getattr(exc, "error_code", None) == 3:  # UNKNOWN_TOPIC_OR_PARTITION: an answer
                    raise
                continue  # this broker's admin API is down or still starting (restarting pod): try the next
        raise AssertionError("no broker's admin API answered")

    return asyncio.run(go())


def replicas_per_broker(kube: Kube) -> dict[int, int]:
    """Replicas each broker holds, over every topic (orders and __consumer_offsets), by the admin API."""

    async def go() -> dict[int, int]:
        async with AdminClient(f"{pod_ip(kube, 0)}:9093", timeout=10) as admin:
            counts: dict[int, int] = {}
            for name in await admin.list_topics():
                for p in (await admin.describe_topic(name)).partitions:
                    for b in p.replicas:
                        counts[b] = counts.get(b, 0) + 1
            return counts

    return asyncio.run(go())


ACKED: list[str] = []


def test_cluster_becomes_ready(operator: Kube) -> None:
    kube = operator
    with Step("3-broker Cluster applied -> Ready"):
        kube.apply(cluster_manifest(3))
        wait_until("Cluster demo Ready with 3 brokers", lambda: cluster_ready(kube, 3), timeout=240, interval=1)
    s = status(kube, "cluster", "demo")
    assert s["bootstrapAddress"] == bootstrap(kube)
    assert s["controllerId"] in (0, 1, 2)
    assert s["labelSelector"]
    assert s["observedGeneration"] == kube.get("cluster", "demo")["metadata"]["generation"]


def test_topic_is_created_and_reported(operator: Kube) -> None:
    kube = operator
    with Step("Topic applied -> status Ready (6 partitions, RF 3)"):
        kube.apply(TOPIC)
        wait_until("Topic orders Ready", lambda: condition(kube, "topic", "orders", "Ready").get("status") == "True",
                   timeout=60, interval=0.5)  # fmt: skip
    s = status(kube, "topic", "orders")
    assert (s["partitions"], s["replicas"], s["topicName"]) == (6, 3, "orders")
    assert s["topicId"]
    assert len(s["partitionDetails"]) == 6
    assert all(len(p["isr"]) == 3 for p in s["partitionDetails"])


def test_librdkafka_produces_and_consumes_through_the_service(operator: Kube) -> None:
    kube = operator
    with Step("librdkafka produce 500 (acks=all) + consume all"):
        acked = client(kube, "produce", bootstrap(kube), "orders", "first", "500")
        assert len(acked) == 500
        ACKED.extend(acked)
        read = client(kube, "consume", bootstrap(kube), "orders", str(len(ACKED)))
    assert set(read) == set(ACKED)


def test_prometheus_scrapes_brokers_and_operator_bytes_in_and_lag(operator: Kube, tmp_path: Path) -> None:
    """A real Prometheus scrapes every broker pod and the operator pod (file-based discovery from
    the pod list, as a PodMonitor would select them); PromQL answers bytes in per topic (the 500
    records of the step before) and the lag of a group that committed 200 of them."""
    kube = operator
    with Step("consumer group reads 200 of 500 and commits"):
        answer = with_cluster_dns(kube, sys.executable, "-c", COMMIT_SOME, bootstrap(kube), "orders", "e2e-lag", "200")
    committed = {int(p): o for p, o in answer["committed"].items()}
    ends = {int(p): o for p, o in answer["ends"].items()}
    assert set(committed) == set(ends) == set(range(6)), answer
    assert sum(committed.values()) == 200, answer
    assert sum(ends.values()) == 500, answer
    lag = {str(p): float(ends[p] - o) for p, o in committed.items()}  # 300 in all
    # Each record's key and value: the batches' bytes can only be more.
    payload = sum(len(f"first-{i}") + len(f"value of first-{i}") for i in range(500))
    cluster = kube.get("cluster", "demo")
    brokers = cluster["status"]["labelSelector"]
    operator_pods = f"app.kubernetes.io/component=operator,app.kubernetes.io/instance={release_name(kube)}"
    with (
        Step("Prometheus (real) scrapes brokers + operator -> PromQL bytes in per topic, consumer lag"),
        run_prometheus(tmp_path, ["tidelog-brokers", "tidelog-operator"], interval="2s") as prom,
    ):
        assert write_file_sd(kube, prom.targets["tidelog-brokers"], brokers, "metrics") == 3
        assert write_file_sd(kube, prom.targets["tidelog-operator"], operator_pods, "metrics") == 1

        def all_up() -> bool:
            up = prom.values("up", "pod")
            want = {"demo-0", "demo-1", "demo-2", kube.out("get", "pods", "-l", operator_pods, "-o",
                                                            "jsonpath={.items[0].metadata.name}")}  # fmt: skip
            assert up == dict.fromkeys(want, 1.0), f"up: {up}"
            return True

        wait_until("every broker and the operator scraped (up == 1)", all_up, timeout=60, interval=1)

        def bytes_in() -> dict[str, float]:
            per_topic: dict[str, float] = prom.values(
                'sum by (topic) (tidelog_bytes_in_total{job="tidelog-brokers"})', "topic"
            )
            records = prom.values('sum by (topic) (tidelog_records_in_total{job="tidelog-brokers"})', "topic")
            assert per_topic.get("orders", 0) >= payload, f"bytes in per topic: {per_topic}"
            assert records.get("orders") == 500, f"records in per topic: {records}"
            return per_topic

        per_topic = wait_until("bytes in per topic", bytes_in, timeout=60, interval=1)

        def group_lag() -> bool:
            series = prom.query('tidelog_consumer_lag{job="tidelog-brokers",group="e2e-lag",topic="orders"}')
            got = {r["metric"]["partition"]: float(r["value"][1]) for r in series}
            assert len(got) == len(series), f"a partition's lag reported twice: {series}"
            assert got == lag, f"lag by partition: {got}, expected {lag}"
            total = prom.values('sum by (group) (tidelog_consumer_lag{topic="orders"})', "group")
            assert total.get("e2e-lag") == 500 - 200, f"lag by group: {total}"
            return True

        wait_until("consumer lag of group e2e-lag", group_lag, timeout=60, interval=1)

        def reconciles() -> float:
            q = 'tidelog_operator_reconciles_total{job="tidelog-operator",kind="Cluster",name="demo"}'
            return sum(float(r["value"][1]) for r in prom.query(q))

        assert wait_until("the operator's reconcile counter", reconciles, timeout=30, interval=1) > 0
    print(f"\nbytes in per topic (PromQL): {per_topic}; lag of e2e-lag by partition: {lag}")


def _external_ready(kube: Kube, replicas: int) -> bool:
    s = status(kube, "cluster", "demo")
    brokers = s.get("brokers") or []
    return (
        bool(s.get("externalBootstrapAddress"))
        and len(brokers) == replicas
        and all(b.get("externalAddress") for b in brokers)
    )


def outside_client(*args: str) -> list[str]:
    """kafka_cluster_client.py run on the host as an outside client: no cluster DNS, only the
    node's address and node ports."""
    proc = subprocess.run([sys.executable, str(CLIENT), *args], capture_output=True, text=True, timeout=240,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, f"outside client {args[:2]} failed: {proc.stderr[-2000:]}"
    result: list[str] = json.loads(proc.stdout)
    return result


def test_clients_outside_kubernetes_use_the_external_listener(operator: Kube) -> None:
    """The Cluster has an external NodePort listener: each broker advertises the node's address and
    its own node port to clients that came in through it, in-cluster clients still get pod names."""
    kube = operator
    with Step("external listener (NodePort): produce 200 + consume from outside"):
        wait_until("external addresses in the Cluster's status", lambda: _external_ready(kube, 3), timeout=120,
                   interval=1)  # fmt: skip
        s = status(kube, "cluster", "demo")
        outside = s["externalBootstrapAddress"]
        advertised = {b["externalAddress"] for b in s["brokers"]}
        brokers = KafkaAdmin({"bootstrap.servers": outside}).list_topics(timeout=30).brokers.values()
        assert {f"{b.host}:{b.port}" for b in brokers} == advertised
        acked = outside_client("produce", outside, "orders", "outside", "200")
        assert len(acked) == 200
        ACKED.extend(acked)
        read = outside_client("consume", outside, "orders", str(len(ACKED)))
    assert set(read) == set(ACKED)
    inside = KafkaAdmin({"bootstrap.servers": f"{pod_ip(kube, 0)}:9092"}).list_topics(timeout=30).brokers.values()
    assert {f"{b.host}:{b.port}" for b in inside} == {
        f"demo-{i}.demo-brokers.{kube.namespace}.svc:9092" for i in range(3)
    }  # the INTERNAL listener: pod names
    nodes = {a.rsplit(":", 1)[0] for a in advertised}
    ports = {int(a.rsplit(":", 1)[1]) for a in advertised}
    assert len(nodes) == 1  # one node here: every broker advertises its address, each with its own port
    assert len(ports) == 3
    assert all(30000 <= p <= 32767 for p in ports)


def test_scale_up_spreads_partitions_to_the_new_brokers(operator: Kube) -> None:
    kube = operator
    with Step("scale 3 -> 5: Ready, rebalanced"):
        kube.run("scale", "cluster", "demo", "--replicas=5")
        wait_until("5 brokers, rebalanced", lambda: cluster_ready(kube, 5), timeout=300, interval=1)
    held = replicas_per_broker(kube)
    assert all(held.get(b) for b in (3, 4)), f"the new brokers got no replicas: {held}"


def test_scale_down_drains_then_removes_and_keeps_every_record(operator: Kube) -> None:
    kube = operator
    with Step("scale 5 -> 3: drained, removed"):
        kube.run("scale", "cluster", "demo", "--replicas=3")
        draining = wait_until("draining starts", lambda: status(kube, "cluster", "demo").get("scaling"), timeout=60)
        if draining["phase"] in ("Draining", "Verifying"):
            assert kube.get("statefulset", "demo")["spec"]["replicas"] == 5  # nothing removed before the drain
        wait_until("3 brokers", lambda: cluster_ready(kube, 3), timeout=300, interval=1)
        wait_until("pods 3 and 4 gone", lambda: not kube.out("get", "pod", "demo-3", "demo-4", "-o", "name"),
                   timeout=120)  # fmt: skip
    placement = [set(p.replicas) for p in describe_topic(kube).partitions]
    assert all(r <= {0, 1, 2} and len(r) == 3 for r in placement), placement
    held = replicas_per_broker(kube)
    assert not any(held.get(b) for b in (3, 4)), f"removed brokers still hold replicas: {held}"
    # storage.deleteClaim is false (the default): the removed brokers' volumes stay.
    claims = kube.out("get", "pvc", "data-demo-3", "data-demo-4", "-o", "name").split()
    assert claims == ["persistentvolumeclaim/data-demo-3", "persistentvolumeclaim/data-demo-4"]
    with Step("consume every acked record after scale-down"):
        read = client(kube, "consume", bootstrap(kube), "orders", str(len(ACKED)))
    assert set(ACKED) <= set(read)


def test_leader_pod_deleted_fails_over_without_loss(operator: Kube) -> None:
    kube = operator
    leader = describe_topic(kube).partitions[0].leader
    with Step("delete a leader pod -> produce 200 more -> all readable"):
        kube.run("delete", "pod", f"demo-{leader}", "--wait=false")
        acked = client(kube, "produce", bootstrap(kube), "orders", "after-failover", "200")
        ACKED.extend(acked)
        wait_until("Cluster Ready again", lambda: cluster_ready(kube, 3), timeout=180, interval=1)
        read = client(kube, "consume", bootstrap(kube), "orders", str(len(ACKED)))
    assert len(acked) == 200
    assert set(ACKED) <= set(read)


def test_config_change_rolls_brokers_without_any_partition_under_min_isr(operator: Kube) -> None:
    kube = operator
    sts_hash = kube.get("statefulset", "demo")["spec"]["template"]["metadata"]["annotations"]
    before = {i: kube.get("pod", f"demo-{i}")["metadata"]["uid"] for i in range(3)}
    lowest_isr: list[int] = []
    with Step("config change -> rolling restart of 3 brokers"):
        kube.apply(cluster_manifest(3, {"log.cleaner.backoff.ms": 15001}))
        wait_until("a new pod template", lambda: kube.get("statefulset", "demo")["spec"]["template"]["metadata"][
            "annotations"] != sts_hash, timeout=60)  # fmt: skip

        def rolled() -> bool:
            with contextlib.suppress(AssertionError):  # no admin API answered this instant (a pod restarting)
                lowest_isr.append(min(len(p.isr) for p in describe_topic(kube).partitions))
            uids = {i: kube.out("get", "pod", f"demo-{i}", "-o", "jsonpath={.metadata.uid}") for i in range(3)}
            # The pods' own Ready too: the Cluster's status may still show the last broker from before
            # its restart until the next reconcile pass; and the roll finished in status.
            return (all(uids[i] and uids[i] != before[i] and pod_ready(kube, i) for i in range(3))
                    and not status(kube, "cluster", "demo").get("roll") and cluster_ready(kube, 3))  # fmt: skip

        wait_until("every broker restarted on the new config", rolled, timeout=600, interval=1)
    assert lowest_isr
    assert min(lowest_isr) >= 2, f"a partition went under min.insync.replicas=2: {lowest_isr}"
    read = client(kube, "consume", bootstrap(kube), "orders", str(len(ACKED)))
    assert set(ACKED) <= set(read)


def test_bad_manifests_are_rejected_or_reported(operator: Kube) -> None:
    kube = operator
    with Step("bad manifests"):
        bad = kube.run("apply", "-f", "-", input=cluster_manifest(-1).replace('"demo"', '"bad"'), check=False)
        assert bad.returncode != 0
        assert "replicas" in bad.stderr
        shrink = json.loads(TOPIC)
        shrink["spec"]["partitions"] = 3
        refused = kube.run("apply", "-f", "-", input=json.dumps(shrink), check=False)
        assert refused.returncode != 0
        assert "partitions may not decrease" in refused.stderr
        orphan = json.loads(TOPIC)
        orphan["metadata"]["name"] = "orphan"
        orphan["spec"]["clusterRef"]["name"] = "no-such-cluster"
        kube.apply(json.dumps(orphan))
        wait_until("orphan reported", lambda: condition(kube, "topic", "orphan", "Ready").get("reason")
                   == "ClusterNotFound", timeout=60)  # fmt: skip
    wait_until("the Cluster still Ready with 3 brokers", lambda: cluster_ready(kube, 3), timeout=60)
    assert status(kube, "topic", "orders")["partitions"] == 6


def test_an_impossible_scale_down_is_blocked_and_harms_nothing(operator: Kube) -> None:
    """RF 3 topics cannot live on 2 brokers: the operator refuses to drain, says why, removes nothing."""
    kube = operator
    with Step("scale 3 -> 2 refused (RF 3): Warning, nothing removed; back to 3"):
        kube.run("scale", "cluster", "demo", "--replicas=2")
        warning = wait_until(
            "a Warning that the scale-down is blocked",
            lambda: (c := condition(kube, "cluster", "demo", "Warning")).get("reason") == "ScaleDownBlocked" and c,
            timeout=60,
        )
        assert "orders (RF 3)" in warning["message"], warning
        assert status(kube, "cluster", "demo")["scaling"]["phase"] == "Blocked"
        assert kube.get("statefulset", "demo")["spec"]["replicas"] == 3
        assert kube.out("get", "pod", "demo-2", "-o", "jsonpath={.status.phase}") == "Running"
        kube.run("scale", "cluster", "demo", "--replicas=3")
        wait_until("Ready with 3 brokers, the Warning gone", lambda: cluster_ready(kube, 3)
                   and condition(kube, "cluster", "demo", "Warning").get("status") == "False", timeout=60)  # fmt: skip
    read = client(kube, "consume", bootstrap(kube), "orders", str(len(ACKED)))
    assert set(ACKED) <= set(read)


def test_deleting_a_topic_resource_deletes_the_topic(operator: Kube) -> None:
    kube = operator
    with Step("Topic deleted -> topic gone from the brokers"):
        kube.run("delete", "topic", "orders", "--timeout=60s", timeout=90)

        def gone() -> bool:
            try:
                describe_topic(kube)
            except AssertionError:
                raise
            except Exception as exc:  # the admin API's KafkaError: UNKNOWN_TOPIC_OR_PARTITION is 3
                return getattr(exc, "error_code", None) == 3
            return False

        wait_until("topic orders deleted in Kafka", gone, timeout=60)
