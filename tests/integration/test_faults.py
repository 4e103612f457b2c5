"""Connection drops between a client and the broker: Apache Kafka's Java producer with its defaults
(idempotent, acks=all) keeps retrying through a proxy that cuts every connection at random moments;
the log ends up with every acknowledged record exactly once, no duplicates, no gaps."""

from __future__ import annotations

import json
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from faultproxy import fault_proxy
from history import check
from realkafka import run_java_tool
from tidelogbroker import free_port, tidelog_broker


def test_java_idempotent_producer_through_connection_drops(tmp_path: Path) -> None:
    port = free_port()
    with fault_proxy(port, cut_every_s=(0.4, 1.2)) as proxy:
        proxy.enabled = False
        with tidelog_broker(tmp_path, "--advertise", f"127.0.0.1:{proxy.port}", port=port) as broker:
            bootstrap = f"127.0.0.1:{proxy.port}"  # every connection crosses the proxy
            admin = AdminClient({"bootstrap.servers": bootstrap})
            admin.create_topics([NewTopic("drops", 2, 1)])["drops"].result(15)
            proxy.enabled = True
            produced = run_java_tool(
                "org.apache.kafka.tools.VerifiableProducer",
                "--topic",
                "drops",
                "--bootstrap-server",
                bootstrap,
                "--max-messages",
                "4000",
                "--throughput",
                "1000",
                timeout=180,
            )
            proxy.enabled = False
            assert produced.returncode == 0, produced.stderr[-2000:]
            events = [json.loads(line) for line in produced.stdout.splitlines() if line.startswith("{")]
            successes = [e for e in events if e.get("name") == "producer_send_success"]
            acked = {e["value"] for e in successes}
            assert proxy.cuts > 0, "the proxy never cut a connection: the test proved nothing"
            assert len(acked) > 3000
            consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
            parts = [TopicPartition("drops", p, 0) for p in range(2)]
            ends = {p: consumer.get_watermark_offsets(TopicPartition("drops", p), 10)[1] for p in range(2)}
            consumer.assign(parts)
            stored: list[tuple[int, int, str]] = []
            deadline = time.monotonic() + 60
            while len(stored) < sum(ends.values()) and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    stored.append((msg.partition(), msg.offset(), msg.value().decode()))
            consumer.close()
            assert broker.alive()
    verdict = check([(e["value"], e["partition"], e["offset"]) for e in successes], [stored])
    assert verdict.ok, verdict.summary()  # nothing lost, nothing twice, offsets consistent
    for p in range(2):
        assert sorted(o for q, o, _ in stored if q == p) == list(range(ends[p])), "a gap in the offsets"
