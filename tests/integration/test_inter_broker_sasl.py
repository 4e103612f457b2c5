"""Brokers replicating over SASL: a 3-broker cluster whose only listener is SASL_SSL, SCRAM-SHA-512
for clients and for the brokers' own replica fetchers (their login in Kafka's JAAS setting, read
through a ``${file:...}`` config provider). The users are written into the metadata store before
the brokers start (what Kafka's ``kafka-storage format --add-scram`` does): with SASL the only way
in, no client could create the first one. A replicated topic (RF 3, min ISR 2, acks=all) is
produced and consumed by librdkafka, every follower in sync; then one broker restarted with a wrong
inter-broker password logs why, drops out of the ISR it cannot fetch for, and nobody crashes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from certs import Pki, make_pki
from clusterclients import produce
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from etcdserver import EtcdServer
from tidelogcluster import TidelogCluster, tidelog_cluster, wait_until

from tidelog.broker.cluster.stores import open_store
from tidelog.broker.security.credentials import StoreCredentials
from tidelog.broker.security.scram import make_credential

pytestmark = pytest.mark.timeout(240)

PASSWORDS = {"broker": "broker-secret-1", "alice": "alice-secret-1"}
JAAS = 'org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="{}";'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _seed_users(etcd: EtcdServer) -> None:
    async def seed() -> None:
        store = open_store(f"etcd://{etcd.endpoints[0]}/test", 10)
        assert store is not None
        await store.open()
        try:
            for user, password in PASSWORDS.items():
                await StoreCredentials(store).set(user, "SCRAM-SHA-512", make_credential("SCRAM-SHA-512", password))
        finally:
            await store.close()

    asyncio.run(seed())


def _client(pki: Pki) -> dict[str, str]:
    return {"security.protocol": "SASL_SSL", "ssl.ca.location": str(pki.ca), "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "alice", "sasl.password": PASSWORDS["alice"]}  # fmt: skip


def _isr(cluster: TidelogCluster, topic: str) -> dict[int, tuple[int, list[int]]]:
    admin = AdminClient({**cluster.client_conf, "bootstrap.servers": cluster.bootstrap})
    parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
    return {p.id: (p.leader, sorted(p.isrs)) for p in parts.values()}


def _consume(cluster: TidelogCluster, topic: str, partitions: int, count: int) -> list[str]:
    c = Consumer({**cluster.client_conf, "bootstrap.servers": cluster.bootstrap, "group.id": "g",
                  "enable.auto.commit": False})  # fmt: skip
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < count and time.monotonic() < deadline:
            got += [m.value().decode() for m in c.consume(500, 1.0) if not m.error()]
    finally:
        c.close()
    return got


def test_a_sasl_ssl_only_cluster_replicates_and_a_wrong_password_only_shrinks_the_isr(tmp_path: Path, pki: Pki) -> None:
    secrets = tmp_path / "broker-secrets.properties"
    secrets.write_text(f"jaas={JAAS.format(PASSWORDS['broker'])}\n")
    args = [
        "--set", "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "--set", "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
        "--set", "config.providers=file",
        "--set", "config.providers.file.class=org.apache.kafka.common.config.provider.FileConfigProvider",
        "--set", f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=${{file:{secrets}:jaas}}",
        "--set", f"ssl.keystore.location={pki.broker}",
        "--set", f"ssl.truststore.location={pki.ca}",
        "--set", "connection.failed.authentication.delay.ms=50",
    ]  # fmt: skip
    with tidelog_cluster(
        tmp_path, 3, *args, listener="SASL_SSL", client_conf=_client(pki), before_start=_seed_users
    ) as cluster:
        admin = AdminClient({**cluster.client_conf, "bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("s", 3, 3, config={"min.insync.replicas": "2"})])["s"].result(30)
        wait_until(lambda: all(len(isr) == 3 for _, isr in _isr(cluster, "s").values()), 30, "s: ISR 3 everywhere")
        values = [f"v{i}" for i in range(300)]
        acked, errors = produce(cluster.bootstrap, "s", values, acks="all", **cluster.client_conf)
        assert errors == []
        assert acked == set(values)
        assert sorted(_consume(cluster, "s", 3, len(values))) == sorted(values)
        # each follower holds every record: its log end matches the leader's (the ISR says so too)
        assert all(len(isr) == 3 for _, isr in _isr(cluster, "s").values())
        for b in cluster.brokers.values():
            assert "cannot authenticate" not in b.log_text()

        # Broker 3 comes back with a wrong inter-broker password: it cannot fetch, so it leaves
        # (and stays out of) the ISR of what 1 and 2 lead; nothing else breaks.
        secrets.write_text(f"jaas={JAAS.format('not-the-password')}\n")
        cluster.brokers[3].stop()
        cluster.restart(3)
        wait_until(
            lambda: "cannot authenticate" in cluster.brokers[3].log_text(), 30, "broker 3 logging its failed login"
        )

        def three_out_where_it_follows() -> bool:
            state = _isr(cluster, "s")
            return all(3 not in isr for leader, isr in state.values() if leader != 3) and any(
                leader != 3 for leader, _ in state.values()
            )

        wait_until(three_out_where_it_follows, 40, "broker 3 out of the ISR of partitions it follows")
        more = [f"w{i}" for i in range(100)]
        acked, errors = produce(cluster.bootstrap, "s", more, acks="all", **cluster.client_conf)
        assert errors == []
        assert acked == set(more)
        log3 = cluster.brokers[3].log_text()
        assert "SASL_AUTHENTICATION_FAILED" in log3
        assert "not-the-password" not in log3
        assert "Traceback" not in log3
        assert all(b.alive() for b in cluster.brokers.values())
        refused_by = [
            i
            for i in (1, 2)
            if any("authentication failed" in line and "SCRAM-SHA-512" in line
                   for line in cluster.brokers[i].log_text().splitlines())
        ]  # fmt: skip
        assert refused_by, "the leaders did not log the refused login"
