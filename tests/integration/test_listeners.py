"""Named listeners through real clients: each client is told the addresses of the listener it came
in on (INTERNAL on 127.0.0.1, EXTERNAL on 127.0.0.2), brokers replicate over the inter-broker
listener, and a listener whose security protocol is not served stops the broker with a clear message."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from clusterclients import produce, read_all
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaConsumer
from tidelogbroker import TIDELOG, free_port, tidelog_broker
from tidelogcluster import tidelog_cluster, wait_until

pytestmark = pytest.mark.timeout(240)


def _brokers(bootstrap: str) -> dict[int, tuple[str, int]]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {b.id: (b.host, b.port) for b in md.brokers.values()}


def test_a_lone_broker_answers_each_listener_with_its_own_address(tmp_path: Path) -> None:
    internal, external = free_port(), free_port()
    listeners = f"INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.2:{external}"
    with tidelog_broker(
        tmp_path,
        "--listen", listeners,
        "--set", "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
        port=internal,
    ):  # fmt: skip
        assert _brokers(f"127.0.0.1:{internal}") == {0: ("127.0.0.1", internal)}
        assert _brokers(f"127.0.0.2:{external}") == {0: ("127.0.0.2", external)}
        # Produce through one listener (librdkafka), read through the other (kafka-python).
        acked, errors = produce(f"127.0.0.2:{external}", "split", [f"v{i}" for i in range(100)])
        assert errors == []
        assert len(acked) == 100
        consumer = KafkaConsumer(
            "split", bootstrap_servers=f"127.0.0.1:{internal}", auto_offset_reset="earliest", consumer_timeout_ms=5000
        )
        try:
            assert sorted(m.value.decode() for m in consumer) == sorted(acked)
        finally:
            consumer.close()
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{internal}"})
        described = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "0")])
        configs = next(iter(described.values())).result(10)
        assert configs["advertised.listeners"].value == listeners


def test_cluster_clients_see_their_listener_and_brokers_replicate_over_internal(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path, 3, external=True) as cluster:
        internal = {i: ("127.0.0.1", b.port) for i, b in cluster.brokers.items()}
        external = {i: ("127.0.0.2", p) for i, p in cluster.external_ports.items()}
        assert _brokers(cluster.bootstrap) == internal
        assert _brokers(cluster.external_bootstrap) == external
        admin = AdminClient({"bootstrap.servers": cluster.external_bootstrap})
        admin.create_topics([NewTopic("orders", 3, 3, config={"min.insync.replicas": "2"})])["orders"].result(30)

        def full_isr() -> bool:
            md = admin.list_topics("orders", timeout=10).topics["orders"]
            return len(md.partitions) == 3 and all(len(p.isrs) == 3 for p in md.partitions.values())

        wait_until(full_isr, 30, "orders: a full ISR on every partition (replication over INTERNAL)")
        values = [f"r{i}" for i in range(300)]
        acked, errors = produce(cluster.external_bootstrap, "orders", values)  # acks=all needs the followers
        assert errors == []
        assert acked == set(values)
        assert sorted(read_all(cluster.bootstrap, "orders", 3)) == sorted(values)
        # A consumer group through EXTERNAL: FindCoordinator answers with the coordinator's EXTERNAL address.
        c = Consumer(
            {
                "bootstrap.servers": cluster.external_bootstrap,
                "group.id": "outside",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            c.subscribe(["orders"])
            got: list[str] = []
            deadline = time.monotonic() + 60
            while len(got) < len(values) and time.monotonic() < deadline:
                got += [m.value().decode() for m in c.consume(500, 1.0) if not m.error()]
            assert sorted(got) == sorted(values)
            c.commit(asynchronous=False)
        finally:
            c.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["--listen", "SECURE://127.0.0.1:{port}"], "listener SECURE has no security protocol"),
        (["--listen", "SASL_PLAINTEXT://127.0.0.1:{port}"], "set sasl.mechanism.inter.broker.protocol"),
        (
            ["--listen", "A://127.0.0.1:{port}", "--advertise", "B://h:1",
             "--set", "listener.security.protocol.map=A:PLAINTEXT"],
            "advertised.listeners names B: not in listeners",
        ),
    ],
)  # fmt: skip
def test_listener_settings_that_cannot_be_served_stop_the_broker_clearly(
    tmp_path: Path, settings: list[str], message: str
) -> None:
    port = free_port()
    args = [a.format(port=port) for a in settings]
    done = subprocess.run(
        [str(TIDELOG), "broker", "--data-dir", str(tmp_path / "data"), "--metrics-port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
