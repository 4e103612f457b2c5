"""Real Kafka clients against a real Tidelog broker: confluent-kafka (librdkafka), kafka-python 3,
aiokafka. Keys pick stable partitions, order holds per partition, replay from offset 0 works, every
codec is stored and served, big records and many partitions work, timestamps round-trip."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from tidelogbroker import RunningBroker

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(broker: RunningBroker, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(15)


def produce(broker: RunningBroker, topic: str, records: list[tuple[bytes | None, bytes]], **conf: object) -> list:
    delivered: list = []
    errors: list = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5, **conf})

    def report(err: object, msg: object) -> None:
        (errors if err else delivered).append(err or msg)

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=report)
    assert producer.flush(30) == 0
    assert errors == []
    return delivered


def consume(broker: RunningBroker, topic: str, partitions: int, expected: int, start: int = 0) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "unused",
            "enable.auto.commit": False,
            "fetch.max.bytes": 4 * 1024 * 1024,
        }
    )
    consumer.assign([TopicPartition(topic, p, start) for p in range(partitions)])
    out: list = []
    deadline = time.monotonic() + 30
    while len(out) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        assert msg.error() is None, msg.error()
        out.append(msg)
    consumer.close()
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_librdkafka_keys_order_codecs_and_replay(broker: RunningBroker, codec: str) -> None:
    topic = topic_name(f"rdk-{codec}")
    create(broker, topic, 4)
    records = [(b"key-%d" % (i % 9), b"%s-%d" % (codec.encode(), i)) for i in range(400)]
    delivered = produce(broker, topic, records, **{"compression.type": codec, "acks": "all"})
    partition_of_key: dict[bytes, set[int]] = defaultdict(set)
    for msg in delivered:
        partition_of_key[msg.key()].add(msg.partition())
    assert all(len(p) == 1 for p in partition_of_key.values()), "a key landed in two partitions"
    got = consume(broker, topic, 4, 400)
    assert sorted(m.value() for m in got) == sorted(v for _, v in records)
    by_partition: dict[int, list[int]] = defaultdict(list)
    for m in got:
        by_partition[m.partition()].append(int(m.value().split(b"-")[1]))
    for seq in by_partition.values():
        assert seq == sorted(seq), "per-partition order broken"
    # seek back to offset 0 and replay: the same records again
    again = consume(broker, topic, 4, 400, start=0)
    assert [
        (m.partition(), m.offset(), m.value()) for m in sorted(again, key=lambda m: (m.partition(), m.offset()))
    ] == [(m.partition(), m.offset(), m.value()) for m in sorted(got, key=lambda m: (m.partition(), m.offset()))]


def test_librdkafka_big_record_many_partitions_and_timestamps(broker: RunningBroker) -> None:
    topic = topic_name("big")
    create(broker, topic, 100)
    # recent timestamps: records older than retention.ms (7 days) would rightly be deleted
    base = int(time.time() * 1000) - 60_000
    big = bytes(range(256)) * (900 * 4)  # 900 KiB
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 2_000_000})
    producer.produce(topic, value=big, partition=7, timestamp=base + 123)
    for p in range(100):
        producer.produce(topic, value=b"p%d" % p, partition=p, timestamp=base + 1000 + p)
    assert producer.flush(30) == 0
    got = consume(broker, topic, 100, 101)
    values = {m.value() for m in got}
    assert big in values
    assert {b"p%d" % p for p in range(100)} <= values
    stamped = {m.value(): m.timestamp()[1] for m in got}
    assert stamped[big] == base + 123
    assert stamped[b"p42"] == base + 1042
    # ListOffsets by time: the first offset at or after a timestamp
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused"})
    found = consumer.offsets_for_times([TopicPartition(topic, 7, base + 500)], 10)
    assert found[0].offset == 1  # offset 0 is the big record at base+123, offset 1 is p7 at base+1007
    latest = consumer.get_watermark_offsets(TopicPartition(topic, 7), 10)
    assert latest == (0, 2)
    consumer.close()


def test_librdkafka_admin_partitions_and_errors(broker: RunningBroker) -> None:
    topic = topic_name("admin")
    create(broker, topic, 2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(15)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 5
    with pytest.raises(KafkaException, match=r"TOPIC_ALREADY_EXISTS|already exists"):
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(15)
    with pytest.raises(KafkaException, match=r"INVALID_TOPIC|topic name"):
        admin.create_topics([NewTopic("bad/name", 1, 1)])["bad/name"].result(15)
    rf_topic = topic_name("rf")
    with pytest.raises(KafkaException, match=r"REPLICATION_FACTOR|replication factor"):
        admin.create_topics([NewTopic(rf_topic, 1, 3)])[rf_topic].result(15)
    admin.delete_topics([topic])[topic].result(15)
    assert topic not in admin.list_topics(timeout=10).topics


def test_kafka_python_produce_consume_and_configs(broker: RunningBroker) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.admin import NewTopic as KpNewTopic

    topic = topic_name("kp")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    admin.create_topics([KpNewTopic(topic, 3, 1, topic_configs={"retention.ms": "3600000"})])
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False, compression_type="lz4"
    )
    futures = [producer.send(topic, key=b"k%d" % (i % 4), value=b"v%d" % i) for i in range(60)]
    producer.flush()
    assert {f.get(10).topic for f in futures} == {topic}
    consumer = KafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    assert sorted(m.value for m in consumer) == sorted(b"v%d" % i for i in range(60))
    consumer.close()
    producer.close()
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    described = admin.describe_configs([resource])
    text = repr(described)
    assert "retention.ms" in text
    assert "3600000" in text
    admin.close()


def test_aiokafka_produce_consume(broker: RunningBroker) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as AioTp

    topic = topic_name("aio")
    create(broker, topic, 1)

    async def scenario() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, compression_type="gzip")
        await producer.start()
        try:
            for i in range(50):
                await producer.send_and_wait(topic, b"a%d" % i, key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([AioTp(topic, 0)])
            out: list[bytes] = []
            while len(out) < 50:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 10)
                out += [m.value for msgs in batch.values() for m in msgs]
            return out
        finally:
            await consumer.stop()

    assert asyncio.run(scenario()) == [b"a%d" % i for i in range(50)]


def test_librdkafka_admin_configs_records_cluster_and_max_timestamp(broker: RunningBroker) -> None:
    from confluent_kafka import ConsumerGroupTopicPartitions  # noqa: F401 - the admin module's types load
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        OffsetSpec,
        ResourceType,
    )

    topic = topic_name("cfg")
    create(broker, topic, 1)
    base = int(time.time() * 1000) - 10_000
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i, delta in enumerate([5, 50, 7]):  # the max timestamp is the middle record
        producer.produce(topic, value=b"r%d" % i, partition=0, timestamp=base + delta)
    assert producer.flush(15) == 0
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry("retention.ms", "123456", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(15)
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    entries = next(iter(described.values())).result(15)
    assert entries["retention.ms"].value == "123456"
    assert entries["cleanup.policy"].value == "delete,compact"
    assert entries["segment.bytes"].value == str(1 << 30)  # Kafka's default, shown as such
    bad = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", "forever", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(KafkaException, match=r"INVALID_CONFIG|not an integer"):
        next(iter(admin.incremental_alter_configs([bad]).values())).result(15)
    tp = TopicPartition(topic, 0)
    offsets = admin.list_offsets({tp: OffsetSpec.max_timestamp()}).values()
    result = next(iter(offsets)).result(15)
    assert (result.offset, result.timestamp) == (1, base + 50)
    deleted = next(iter(admin.delete_records([TopicPartition(topic, 0, 2)]).values())).result(15)
    assert deleted.low_watermark == 2
    earliest = next(iter(admin.list_offsets({tp: OffsetSpec.earliest()}).values())).result(15)
    assert earliest.offset == 2
    cluster = admin.describe_cluster().result(15)
    assert [node.id for node in cluster.nodes] == [0]
    assert cluster.cluster_id
