"""Apache Kafka's own Java clients and tools (4.1.1, from Maven Central) against Tidelog, with their
default settings (idempotent producer, acks=all): ProducerPerformance, VerifiableProducer, and the
console consumer in a consumer group."""

from __future__ import annotations

import json
import uuid

from groupreader import read_in_group
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


def test_kafka_consumer_groups_tool_lists_describes_and_resets(broker: RunningBroker) -> None:
    import datetime
    import time

    from confluent_kafka import Consumer, Producer, TopicPartition

    topic, group = f"cg-{uuid.uuid4().hex[:6]}", f"cg-{uuid.uuid4().hex[:6]}"
    base = int(time.time() * 1000) - 100_000
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(30):
        producer.produce(topic, value=b"%d" % i, partition=0, timestamp=base + i * 1000)
    assert producer.flush(15) == 0
    consumer = read_in_group(broker.bootstrap, group, topic, 30)
    consumer.commit(asynchronous=False)
    consumer.close()
    tool = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
    listed = run_java_tool(tool, "--bootstrap-server", broker.bootstrap, "--list")
    assert listed.returncode == 0, listed.stderr
    assert group in listed.stdout.split()
    described = run_java_tool(tool, "--bootstrap-server", broker.bootstrap, "--describe", "--group", group)
    assert described.returncode == 0, described.stderr
    row = next(line.split() for line in described.stdout.splitlines() if topic in line)
    assert row[2:6] == ["0", "30", "30", "0"]  # partition, current offset, log end, lag

    def committed() -> int:
        check = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        try:
            return int(check.committed([TopicPartition(topic, 0)], 10)[0].offset)
        finally:
            check.close()

    reset = run_java_tool(
        tool,
        "--bootstrap-server",
        broker.bootstrap,
        "--group",
        group,
        "--topic",
        topic,
        "--reset-offsets",
        "--to-earliest",
        "--execute",
    )
    assert reset.returncode == 0, reset.stderr + reset.stdout
    assert committed() == 0
    when = datetime.datetime.fromtimestamp((base + 10_500) / 1000, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    travel = run_java_tool(
        tool,
        "--bootstrap-server",
        broker.bootstrap,
        "--group",
        group,
        "--topic",
        topic,
        "--reset-offsets",
        "--to-datetime",
        when[:-3],
        "--execute",
    )
    assert travel.returncode == 0, travel.stderr + travel.stdout
    assert committed() == 11  # the first record at or after base + 10.5 s


def test_verifiable_producer_and_consumer_every_acked_record_consumed(broker: RunningBroker) -> None:
    topic, group = f"verify-{uuid.uuid4().hex[:6]}", f"verify-{uuid.uuid4().hex[:6]}"
    produced = run_java_tool(
        "org.apache.kafka.tools.VerifiableProducer",
        "--topic",
        topic,
        "--bootstrap-server",
        broker.bootstrap,
        "--max-messages",
        "2000",
    )
    assert produced.returncode == 0, produced.stderr
    acked = {
        json.loads(line)["value"]
        for line in produced.stdout.splitlines()
        if line.startswith("{") and '"producer_send_success"' in line
    }
    assert len(acked) == 2000
    consumed = run_java_tool(
        "org.apache.kafka.tools.VerifiableConsumer",
        "--topic",
        topic,
        "--group-id",
        group,
        "--bootstrap-server",
        broker.bootstrap,
        "--max-messages",
        "2000",
        "--reset-policy",
        "earliest",
        timeout=120,
    )
    assert consumed.returncode == 0, consumed.stderr
    events = [json.loads(line) for line in consumed.stdout.splitlines() if line.startswith("{")]
    records = sum(e["count"] for e in events if e.get("name") == "records_consumed")
    commits = [e for e in events if e.get("name") == "offsets_committed"]
    assert records >= 2000
    assert commits
    assert all(e.get("success", True) for e in commits)


def test_java_consumer_with_the_sticky_assignor(broker: RunningBroker) -> None:
    topic = f"sticky-{uuid.uuid4().hex[:6]}"
    produced = run_java_tool(
        "org.apache.kafka.tools.VerifiableProducer",
        "--topic",
        topic,
        "--bootstrap-server",
        broker.bootstrap,
        "--max-messages",
        "300",
    )
    assert produced.returncode == 0, produced.stderr
    consumed = run_java_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        "--bootstrap-server",
        broker.bootstrap,
        "--topic",
        topic,
        "--group",
        f"sticky-{uuid.uuid4().hex[:6]}",
        "--from-beginning",
        "--max-messages",
        "300",
        "--timeout-ms",
        "30000",
        "--consumer-property",
        "partition.assignment.strategy=org.apache.kafka.clients.consumer.StickyAssignor",
    )
    assert consumed.returncode == 0, consumed.stderr
    assert sorted(consumed.stdout.split(), key=int) == [str(i) for i in range(300)]
