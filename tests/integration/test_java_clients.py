"""Apache Kafka's own Java clients and tools (4.1.1, from Maven Central) against Tidelog, with their
default settings (idempotent producer, acks=all): ProducerPerformance, VerifiableProducer, and the
console consumer in a consumer group."""

from __future__ import annotations

import json
import uuid

from realkafka import run_java_tool
from tidelogbroker import RunningBroker


def test_java_tools_produce_idempotently_and_consume_in_a_group(broker: RunningBroker) -> None:
    topic = f"java-{uuid.uuid4().hex[:6]}"
    perf = run_java_tool(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        "20000",
        "--record-size",
        "1024",
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={broker.bootstrap}",
        "compression.type=lz4",
    )
    assert perf.returncode == 0, perf.stderr + perf.stdout
    assert "20000 records sent" in perf.stdout
    verifiable = run_java_tool(
        "org.apache.kafka.tools.VerifiableProducer",
        "--topic",
        topic,
        "--bootstrap-server",
        broker.bootstrap,
        "--max-messages",
        "500",
        "--acks",
        "-1",
    )
    assert verifiable.returncode == 0, verifiable.stderr
    events = [json.loads(line) for line in verifiable.stdout.splitlines() if line.startswith("{")]
    acked = [e for e in events if e.get("name") == "producer_send_success"]
    assert len(acked) == 500
    assert not [e for e in events if e.get("name") == "producer_send_error"]
    consumed = run_java_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--bootstrap-server",
        broker.bootstrap,
        "--topic",
        topic,
        "--group",
        f"java-group-{uuid.uuid4().hex[:6]}",
        "--from-beginning",
        "--max-messages",
        "20500",
        "--timeout-ms",
        "30000",
    )
    assert consumed.returncode == 0, consumed.stderr
    lines = consumed.stdout.splitlines()
    assert len(lines) == 20500
    assert {e["value"] for e in acked} <= set(lines)  # every acknowledged record was read back
