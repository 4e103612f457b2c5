"""Three Tidelog brokers and a real etcd on loopback, used through real clients (librdkafka):
replicated topics, acks=all with min.insync.replicas, leader failover after SIGKILL with no acked
record lost, NOT_ENOUGH_REPLICAS when the ISR is too small, controlled shutdown, and consumer
groups whose coordinator moves with the offsets partition's leader."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from clusterclients import produce, read_all
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tidelogcluster import TidelogCluster, tidelog_cluster, wait_until

from tidelog.broker.groups.offsets_store import partition_for

pytestmark = pytest.mark.timeout(240)


def _admin(cluster: TidelogCluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap})


def _partitions(cluster: TidelogCluster, topic: str) -> dict[int, Any]:
    md = _admin(cluster).list_topics(topic, timeout=10)
    t = md.topics.get(topic)
    return dict(t.partitions) if t is not None and t.error is None else {}


def _create(cluster: TidelogCluster, topic: str, partitions: int = 3, rf: int = 3, min_isr: int = 2) -> None:
    admin = _admin(cluster)  # kept alive until the answer arrives
    futures = admin.create_topics(
        [NewTopic(topic, partitions, rf, config={"min.insync.replicas": str(min_isr)})], operation_timeout=10
    )
    futures[topic].result(30)
    wait_until(
        lambda: (
            len(_partitions(cluster, topic)) == partitions
            and all(len(p.isrs) == rf and p.leader >= 0 for p in _partitions(cluster, topic).values())
        ),
        30,
        f"{topic}: every partition led with a full ISR",
    )


def _metric_sum(cluster: TidelogCluster, name: str) -> float:
    """``name`` summed over the live brokers' Prometheus endpoints."""
    total = 0.0
    for b in cluster.brokers.values():
        if not b.alive():
            continue
        with urllib.request.urlopen(f"http://127.0.0.1:{b.metrics_port}/metrics", timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(name + " "):
                    total += float(line.split()[1])
    return total


def test_replicated_topic_survives_leader_kill(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path) as cluster:
        topic = "orders"
        _create(cluster, topic)
        first, errors = produce(cluster.bootstrap, topic, [f"a-{i}" for i in range(3000)])
        assert not errors
        assert len(first) == 3000
        leader = _partitions(cluster, topic)[0].leader
        cluster.kill(leader)
        wait_until(
            lambda: all(p.leader not in (leader, -1) for p in _partitions(cluster, topic).values()),
            30,
            "new leaders elected",
        )
        wait_until(
            lambda: _metric_sum(cluster, "tidelog_replica_under_replicated_partitions") == 3, 30, "3 partitions URP"
        )
        assert _metric_sum(cluster, "tidelog_controller_active") == 1
        assert _metric_sum(cluster, "tidelog_replica_leaders") >= 3
        second, errors = produce(cluster.bootstrap, topic, [f"b-{i}" for i in range(3000)])
        assert not errors
        assert len(second) == 3000
        seen = read_all(cluster.bootstrap, topic, 3)
        lost = (first | second) - set(seen)
        assert not lost, f"{len(lost)} acknowledged records lost, e.g. {sorted(lost)[:5]}"
        assert len(seen) == len(set(seen)), "duplicates read back"
        # The killed broker comes back, catches up and rejoins the ISR.
        cluster.restart(leader)
        wait_until(
            lambda: all(leader in p.isrs for p in _partitions(cluster, topic).values()), 60, "killed broker back in ISR"
        )


def test_acks_all_needs_min_insync_replicas(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path) as cluster:
        topic = "strict"
        _create(cluster, topic, partitions=1)
        leader = _partitions(cluster, topic)[0].leader
        others = [b for b in cluster.brokers if b != leader]
        for b in others:
            cluster.kill(b)
        wait_until(lambda: _partitions(cluster, topic)[0].isrs == [leader], 30, "ISR shrunk to the leader")
        acked, errors = produce(cluster.bootstrap, topic, ["x"], **{"message.timeout.ms": 5000, "retries": 0})
        assert not acked
        assert any("NOT_ENOUGH_REPLICAS" in e for e in errors), errors


def test_controlled_shutdown_moves_leadership_first(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path) as cluster:
        topic = "graceful"
        _create(cluster, topic, partitions=6)
        leaders = {p.leader for p in _partitions(cluster, topic).values()}
        victim = sorted(leaders)[0]
        assert cluster.brokers[victim].stop() == 0
        log = cluster.brokers[victim].log_text()
        assert "controlled shutdown: leadership handed over (0 partitions still led here)" in log, log[-3000:]
        assert all(p.leader != victim for p in _partitions(cluster, topic).values())
        acked, errors = produce(cluster.bootstrap, topic, [f"v-{i}" for i in range(200)])
        assert not errors
        assert len(acked) == 200


def test_consumer_group_commits_survive_coordinator_loss(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path, 3, "--set", "offsets.topic.num.partitions=3") as cluster:
        topic = "events"
        _create(cluster, topic, partitions=2)
        _acked, errors = produce(cluster.bootstrap, topic, [f"e-{i}" for i in range(100)])
        assert not errors
        conf = {
            "bootstrap.servers": cluster.bootstrap,
            "group.id": "g1",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        c = Consumer(conf)
        c.subscribe([topic])
        got = 0
        deadline = time.monotonic() + 60
        while got < 100 and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                got += 1
        assert got == 100
        c.commit(asynchronous=False)
        committed = {
            tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        }
        c.close()
        assert sum(committed.values()) == 100
        offsets = _partitions(cluster, "__consumer_offsets")
        assert offsets
        assert all(len(p.replicas) == 3 for p in offsets.values())
        coordinator = offsets[partition_for("g1", len(offsets))].leader
        cluster.kill(coordinator)
        c = Consumer(conf)
        try:
            wait_until(
                lambda: _committed(c, topic) == committed, 60, "committed offsets readable from the new coordinator"
            )
        finally:
            c.close()


def _committed(c: Consumer, topic: str) -> dict[int, int] | None:
    try:
        return {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], 5)}
    except KafkaException:
        return None
