"""The replicated cluster under faults, checked like Jepsen checks Kafka: three brokers and a real
etcd on loopback, a topic of 3 partitions with RF=3 and min.insync.replicas=2, idempotent acks=all
producers and a live consumer (``clusterworkload``), and one nemesis scenario per test
(``nemesis``):

1. SIGKILL of a partition's current leader, three times, restarting it in between;
2. SIGKILL of two brokers in turn, the second once the first is back in every ISR;
3. SIGSTOP of a leader for longer than the etcd session (3 s), then SIGCONT: it must be deposed
   and, resumed, must ack nothing it cannot (it learns the partition's leader epoch moved on);
4. network partitions (``proxied=True`` cluster: each broker advertises its own ``faultproxy.Link``,
   which clients and the other brokers' replica fetchers cross, and reaches etcd through another):
   a leader cut off etcd only (clients still reach it), then a leader cut off etcd and every
   inbound Kafka connection (clients and followers);
5. SIGKILL of every broker at once, then all restarted, twice;
6. etcd unavailable: paused for less than the session TTL, paused for more, then stopped and
   restarted.

After the nemesis heals the cluster the test waits until every partition has a leader and a full
ISR, reads every partition back from offset 0 and checks the history: every acknowledged value is
read back (lost=0), no value at two offsets (duplicates=0, the producers are idempotent), no offset
with two values, no gaps, per-producer per-partition offsets in send order, and nothing the live
consumer read is missing from the final read (no read above the high watermark). Each test prints
one report line; the history excerpt, the nemesis log and the broker logs come with a failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from clusterworkload import Workload, create_topic, healthy, leader_of, partitions, wait_healthy
from nemesis import Nemesis
from tidelogcluster import TidelogCluster, tidelog_cluster, wait_until

pytestmark = pytest.mark.timeout(200)

TOPIC = "jepsen"
PARTITIONS = 3
SESSION_S = 3.0  # metadata.session.timeout.ms in the fixture
WARMUP_S = 4.0
COOLDOWN_S = 4.0
REREGISTERED = "session was lost; registered again"  # what a broker logs when its session came back

Scenario = Callable[[TidelogCluster, Nemesis], None]


def _run(tmp_path: Path, name: str, scenario: Scenario, *, proxied: bool = False) -> None:
    started = time.monotonic()
    with tidelog_cluster(tmp_path, proxied=proxied) as cluster:
        create_topic(cluster, TOPIC, PARTITIONS)
        nemesis = Nemesis(cluster)
        workload = Workload(cluster, TOPIC, PARTITIONS)
        workload.start()
        try:
            time.sleep(WARMUP_S)
            nemesis.note(f"load running, {workload.acked()} acked")
            scenario(cluster, nemesis)
            nemesis.note("healed")
            time.sleep(COOLDOWN_S)
        finally:
            workload.stop()
        nemesis.note(f"load stopped, {workload.acked()} acked")
        wait_healthy(cluster, TOPIC, PARTITIONS, 60)
        final = workload.read_all()
        report = workload.verdict(final)
        print(f"{report.line(name, nemesis.faults)} took={time.monotonic() - started:.0f}s")
        context = f"{report.details(workload.ops)}\nnemesis:\n{nemesis.log()}"
        assert nemesis.faults > 0
        assert report.verdict.acked >= 200, f"too few acknowledged sends to judge\n{context}"
        assert not report.verdict.lost, f"acknowledged records lost\n{context}"
        assert not report.verdict.duplicated, f"idempotent sends duplicated\n{context}"
        assert report.ok, f"history anomalies: {report.line(name, nemesis.faults)}\n{context}"


def _full_isr(cluster: TidelogCluster, nemesis: Nemesis) -> None:
    wait_healthy(cluster, TOPIC, PARTITIONS, 60)
    nemesis.note("every partition led with a full ISR")


def _deposed(cluster: TidelogCluster, partition: int, broker_id: int) -> bool:
    """Some live broker's metadata names another leader for ``partition``."""
    p = partitions(cluster, TOPIC).get(partition)
    return p is not None and p.leader not in (broker_id, -1)


def _log_count(cluster: TidelogCluster, broker_id: int, text: str) -> int:
    return cluster.brokers[broker_id].log_text().count(text)


def _wait_logged(cluster: TidelogCluster, broker_id: int, text: str, before: int) -> None:
    wait_until(lambda: _log_count(cluster, broker_id, text) > before, 30, f"broker {broker_id} logs {text!r}")


def test_leader_sigkill_repeated(tmp_path: Path) -> None:
    def scenario(cluster: TidelogCluster, nemesis: Nemesis) -> None:
        for round_ in range(3):
            _full_isr(cluster, nemesis)
            victim = leader_of(cluster, TOPIC, round_ % PARTITIONS)
            nemesis.kill(victim)
            time.sleep(SESSION_S + 2)
            nemesis.restart(victim)
        _full_isr(cluster, nemesis)

    _run(tmp_path, "leader-kill", scenario)


def test_two_brokers_sigkilled_in_turn(tmp_path: Path) -> None:
    def scenario(cluster: TidelogCluster, nemesis: Nemesis) -> None:
        first = leader_of(cluster, TOPIC, 0)
        nemesis.kill(first)
        time.sleep(SESSION_S + 2)
        nemesis.restart(first)
        _full_isr(cluster, nemesis)  # the first is back in every ISR before the second goes
        second = leader_of(cluster, TOPIC, 1)
        if second == first:
            second = next(b for b in cluster.brokers if b != first)
        nemesis.kill(second)
        time.sleep(SESSION_S + 2)
        nemesis.restart(second)
        _full_isr(cluster, nemesis)

    _run(tmp_path, "two-kills", scenario)


def _pause_leader(cluster: TidelogCluster, nemesis: Nemesis, partition: int) -> None:
    _full_isr(cluster, nemesis)
    victim = leader_of(cluster, TOPIC, partition)
    before = _log_count(cluster, victim, REREGISTERED)
    nemesis.pause(victim)
    try:
        wait_until(lambda: _deposed(cluster, partition, victim), 20, f"broker {victim} deposed")
        nemesis.note(f"broker {victim} deposed as leader of {TOPIC}-{partition}")
        time.sleep(2)
    finally:
        nemesis.resume(victim)
    # Resumed, it must learn of the new epoch (and follow) rather than go on leading.
    wait_until(lambda: _deposed(cluster, partition, victim), 20, "the resumed broker stays deposed")
    _wait_logged(cluster, victim, REREGISTERED, before)


def test_leader_paused_past_its_session(tmp_path: Path) -> None:
    def scenario(cluster: TidelogCluster, nemesis: Nemesis) -> None:
        for round_ in range(2):
            _pause_leader(cluster, nemesis, round_ % PARTITIONS)
        _full_isr(cluster, nemesis)

    _run(tmp_path, "leader-pause", scenario)


def test_network_partition_isolates_one_broker(tmp_path: Path) -> None:
    def scenario(cluster: TidelogCluster, nemesis: Nemesis) -> None:
        _full_isr(cluster, nemesis)
        # (a) The leader of partition 0 loses etcd only: clients and followers still reach it.
        victim = leader_of(cluster, TOPIC, 0)
        before = _log_count(cluster, victim, REREGISTERED)
        nemesis.cut_etcd(victim)
        wait_until(lambda: _deposed(cluster, 0, victim), 20, f"broker {victim} deposed")
        nemesis.note(f"broker {victim} deposed as leader of {TOPIC}-0")
        time.sleep(3)
        nemesis.heal_etcd(victim)
        _wait_logged(cluster, victim, REREGISTERED, before)
        _full_isr(cluster, nemesis)
        # (b) The leader of partition 1 loses etcd and every inbound Kafka connection.
        victim = leader_of(cluster, TOPIC, 1)
        before = _log_count(cluster, victim, REREGISTERED)
        nemesis.isolate(victim)
        wait_until(lambda: _deposed(cluster, 1, victim), 20, f"broker {victim} deposed")
        nemesis.note(f"broker {victim} deposed as leader of {TOPIC}-1")
        time.sleep(3)
        nemesis.heal(victim)
        _wait_logged(cluster, victim, REREGISTERED, before)
        _full_isr(cluster, nemesis)

    _run(tmp_path, "partition", scenario, proxied=True)


def test_every_broker_killed_and_restarted(tmp_path: Path) -> None:
    def scenario(cluster: TidelogCluster, nemesis: Nemesis) -> None:
        for _round in range(2):
            _full_isr(cluster, nemesis)
            for broker_id in cluster.brokers:
                nemesis.kill(broker_id)
            time.sleep(1)
            for broker_id in cluster.brokers:
                nemesis.restart(broker_id)
            _full_isr(cluster, nemesis)
            time.sleep(2)

    _run(tmp_path, "kill-all", scenario)


def test_etcd_unavailable_shorter_and_longer_than_the_session(tmp_path: Path) -> None:
    def scenario(cluster: TidelogCluster, nemesis: Nemesis) -> None:
        _full_isr(cluster, nemesis)
        nemesis.pause_etcd()
        time.sleep(SESSION_S - 1.5)
        nemesis.resume_etcd()
        time.sleep(3)
        assert healthy(cluster, TOPIC, PARTITIONS), "a pause shorter than the session changed the ISR"
        before = {b: _log_count(cluster, b, REREGISTERED) for b in cluster.brokers}
        nemesis.pause_etcd()
        time.sleep(SESSION_S + 3)
        nemesis.resume_etcd()
        for b in cluster.brokers:  # every session ended: every broker registers again
            _wait_logged(cluster, b, REREGISTERED, before[b])
        _full_isr(cluster, nemesis)
        nemesis.stop_etcd()
        time.sleep(SESSION_S + 2)
        nemesis.start_etcd()
        _full_isr(cluster, nemesis)

    _run(tmp_path, "etcd-outage", scenario)
