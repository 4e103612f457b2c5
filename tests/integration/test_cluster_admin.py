"""The gRPC admin API of a 3-broker cluster (real etcd, real brokers): describe, topic life cycle,
reassignment, drain and rebalance under a running acks=all producer with nothing lost, the
restart-safety probe, and bad input answered with a clear error and nothing changed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from clusterclients import produce, read_all
from confluent_kafka import Producer
from realkafka import run_java_tool
from tidelogcluster import TidelogCluster, tidelog_cluster, wait_until

from tidelog.broker.admin.client import AdminClient
from tidelog.broker.admin.model import Move, RestartCheck
from tidelog.broker.protocol.errors import KafkaError

pytestmark = pytest.mark.timeout(240)


T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _describe(target: str, topic: str) -> dict[int, tuple[list[int], list[int], int]]:
    async with AdminClient(target) as admin:
        t = await admin.describe_topic(topic)
    return {p.partition: (p.replicas, p.isr, p.leader) for p in t.partitions}


class Load:
    """An acks=all producer running in a thread until stopped; remembers what was acknowledged."""

    def __init__(self, cluster: TidelogCluster, topic: str) -> None:
        self.acked: set[str] = set()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._producer = Producer(
            {"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5, "enable.idempotence": True}
        )
        self._thread = threading.Thread(target=self._run, args=(topic,), daemon=True)
        self._thread.start()

    def _report(self, err: object, msg: object) -> None:
        if err is None:
            self.acked.add(msg.value().decode())
        else:
            self.errors.append(str(err))

    def _run(self, topic: str) -> None:
        i = 0
        while not self._stop.is_set():
            self._producer.produce(topic, f"r-{i}".encode(), on_delivery=self._report)
            self._producer.poll(0)
            i += 1
            time.sleep(0.002)
        self._producer.flush(60)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)


def test_admin_api_drains_and_rebalances_under_load(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path) as cluster:
        target = cluster.admin_target(1)

        async def alive() -> list[int]:
            async with AdminClient(target) as admin:
                desc = await admin.describe_cluster()
                assert desc.controller_id in (-1, 1, 2, 3)
                return sorted(b.id for b in desc.brokers if b.alive and desc.controller_id > 0)

        wait_until(lambda: _run(alive()) == [1, 2, 3], 30, "three brokers registered, a controller elected")

        async def setup() -> None:
            async with AdminClient(target) as admin:
                await admin.create_topic("moves", 6, 2, {"min.insync.replicas": "1"})
                assert "moves" in await admin.list_topics()

        _run(setup())
        wait_until(
            lambda: all(len(isr) == 2 for _r, isr, _l in _run(_describe(target, "moves")).values()), 30, "ISR full"
        )
        load = Load(cluster, "moves")
        time.sleep(1)

        async def drain() -> int:
            async with AdminClient(cluster.admin_target(2)) as admin:
                plan = await admin.drain(3)
                return len(plan.moves)

        moved = _run(drain())
        assert moved > 0
        wait_until(
            lambda: all(3 not in replicas for replicas, _i, _l in _run(_describe(target, "moves")).values()),
            60,
            "broker 3 drained",
        )
        check = _run(_can_restart(target, 3))
        assert check.ok, check.reasons

        async def rebalance() -> None:
            async with AdminClient(target) as admin:
                await admin.rebalance()
                assert await admin.list_reassignments() is not None

        _run(rebalance())
        wait_until(
            lambda: any(3 in replicas for replicas, _i, _l in _run(_describe(target, "moves")).values()),
            60,
            "rebalance put replicas back on broker 3",
        )
        wait_until(lambda: not _run(_reassignments(target)), 60, "reassignments finished")
        time.sleep(1)
        load.stop()
        assert not load.errors, load.errors[:5]
        assert len(load.acked) > 100
        seen = set(read_all(cluster.bootstrap, "moves", 6))
        lost = load.acked - seen
        assert not lost, f"{len(lost)} acknowledged records lost during drain/rebalance"


async def _can_restart(target: str, broker: int) -> RestartCheck:
    async with AdminClient(target) as admin:
        return await admin.can_restart(broker)


async def _reassignments(target: str) -> list[object]:
    async with AdminClient(target) as admin:
        return list(await admin.list_reassignments())


def test_restart_probe_and_bad_input(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path) as cluster:
        target = cluster.admin_target(3)

        async def scenario() -> None:
            async with AdminClient(target) as admin:
                await admin.create_topic("tight", 1, 3, {"min.insync.replicas": "3"})
                await admin.create_topic("loose", 1, 3, {"min.insync.replicas": "2"})
                for bad, code in (
                    (admin.describe_topic("nope"), 3),
                    (admin.create_topic("big", 1, 4, {}), 38),
                    (admin.create_topic("tight", 1, 1, {}), 36),
                    (admin.create_topic("odd", 1, 1, {}, assignment=[[9]]), 39),
                    (admin.create_topic("bad-config", 1, 1, {"retention.ms": "soon"}), 40),
                    (admin.reassign([Move("nope", 0, [1])]), 3),
                    (admin.reassign([Move("loose", 0, [1, 1])]), 39),
                    (admin.drain(42), 38),
                ):
                    with pytest.raises(KafkaError) as info:
                        await bad
                    assert info.value.error_code == code, info.value
                assert sorted(await admin.list_topics()) == ["loose", "tight"]
                assert await admin.list_reassignments() == []
                before = await admin.describe_topic("loose")
                assert len(before.partitions[0].replicas) == 3

        _run(scenario())
        wait_until(
            lambda: (
                len(_run(_describe(target, "tight"))[0][1]) == 3 and len(_run(_describe(target, "loose"))[0][1]) == 3
            ),
            30,
            "full ISRs",
        )
        check = _run(_can_restart(target, 1))
        assert not check.ok
        assert any("tight-0" in r for r in check.reasons)
        assert not any("loose-0" in r for r in check.reasons)


def test_throttled_reassignment_moves_data_at_the_throttle_rate(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path) as cluster:
        target = cluster.admin_target(1)

        async def create() -> None:
            async with AdminClient(target) as admin:
                await admin.create_topic("slow", 1, 1, {}, assignment=[[1]])

        _run(create())
        wait_until(lambda: _run(_describe(target, "slow"))[0][2] == 1, 30, "slow-0 led by broker 1")
        values = [f"{i:06d}-" + "x" * 1000 for i in range(300)]  # about 300 KB
        small = {"compression.type": "none", "batch.size": 4096, "linger.ms": 0}  # many batches: one can't be split
        acked, errors = produce(cluster.bootstrap, "slow", values, **small)
        assert not errors
        rate = 60_000

        async def move() -> None:
            async with AdminClient(target) as admin:
                await admin.reassign([Move("slow", 0, [2])], throttle_bytes_per_s=rate)
                moving = await admin.list_reassignments()
                assert [(r.topic, r.adding, r.removing) for r in moving] == [("slow", [2], [1])]

        started = time.monotonic()
        _run(move())
        wait_until(lambda: _run(_describe(target, "slow"))[0][0] == [2], 60, "slow-0 moved to broker 2")
        took = time.monotonic() - started
        assert took >= 0.5 * 300_000 / rate, f"a throttled move of ~300 KB at {rate} B/s took only {took:.1f}s"
        assert set(read_all(cluster.bootstrap, "slow", 1)) == acked


def test_kafka_reassign_partitions_tool(tmp_path: Path) -> None:
    """Kafka's own kafka-reassign-partitions (Java, AlterPartitionReassignments and
    ListPartitionReassignments) moves a partition and verifies it."""
    with tidelog_cluster(tmp_path) as cluster:
        target = cluster.admin_target(1)

        async def create() -> None:
            async with AdminClient(target) as admin:
                await admin.create_topic("java-moves", 2, 2, {}, assignment=[[1, 2], [2, 1]])

        _run(create())
        acked, errors = produce(cluster.bootstrap, "java-moves", [f"j-{i}" for i in range(500)])
        assert not errors
        plan = tmp_path / "plan.json"
        plan.write_text(
            json.dumps({"version": 1, "partitions": [{"topic": "java-moves", "partition": 0, "replicas": [3, 2]}]})
        )
        tool = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
        common = ("--bootstrap-server", cluster.bootstrap, "--reassignment-json-file", str(plan))
        out = run_java_tool(tool, *common, "--execute")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Successfully started partition reassignment" in out.stdout, out.stdout
        wait_until(
            lambda: "is completed" in run_java_tool(tool, *common, "--verify").stdout, 60, "the tool verifies the move"
        )
        assert _run(_describe(target, "java-moves"))[0][0] == [3, 2]
        assert set(read_all(cluster.bootstrap, "java-moves", 2)) == acked
