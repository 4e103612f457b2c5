"""The client against a real broker (Apache Kafka 4.1.1 today; Tidelog's broker joins ``BROKER_KINDS``).

Every test creates its own topic, so they are independent of order and of each other.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from realkafka import RunningBroker, broker, run_java_tool, target_broker  # noqa: F401  (fixtures)

from tidelog.broker.client import (
    EARLIEST,
    LATEST,
    MAX_TIMESTAMP,
    Admin,
    Fetcher,
    KafkaClient,
    Producer,
    ProducerRecord,
    TopicPartition,
    list_offsets,
    partition_for_key,
)
from tidelog.broker.client.versions import CLIENT_RANGES, ApiKey
from tidelog.broker.protocol import codecs
from tidelog.broker.protocol.errors import KafkaError, UnknownTopicOrPartitionError
from tidelog.broker.protocol.records import Record

pytestmark = pytest.mark.timeout(120)


def topic_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def client(broker: RunningBroker) -> AsyncIterator[KafkaClient]:  # noqa: F811
    async with KafkaClient(broker.bootstrap, request_timeout=30) as c:
        yield c


async def consume_all(
    client: KafkaClient, topic: str, expected: int, deadline_s: float = 30
) -> dict[int, list[Record]]:
    """Every record of ``topic`` from the beginning, per partition, until ``expected`` have arrived."""
    partitions = await client.partitions_for(topic)
    positions = {TopicPartition(topic, p): 0 for p in partitions}
    got: dict[int, list[Record]] = defaultdict(list)
    fetcher = Fetcher(client, max_wait_ms=200)
    deadline = time.monotonic() + deadline_s
    while sum(map(len, got.values())) < expected:
        assert time.monotonic() < deadline, f"only {sum(map(len, got.values()))} of {expected} records arrived"
        for tp, part in (await fetcher.fetch(positions)).items():
            got[tp.partition].extend(part.records())
            positions[tp] = part.next_offset
    return dict(got)


@pytest.mark.asyncio
async def test_negotiates_the_highest_common_versions(client: KafkaClient) -> None:
    conn = await client.any_connection()
    for api, (_lo, hi) in CLIENT_RANGES.items():
        broker_lo, broker_hi = conn.api_versions[int(api)]
        assert conn.version(api) == min(hi, broker_hi)
        assert conn.version(api) >= broker_lo


@pytest.mark.asyncio
async def test_pipelined_requests_on_one_connection(client: KafkaClient) -> None:
    conn = await client.any_connection()
    fields = {"topics": [], "allow_auto_topic_creation": False, "include_topic_authorized_operations": False}
    answers = await asyncio.gather(*(conn.request(ApiKey.METADATA, fields) for _ in range(50)))
    assert {a.cluster_id for a in answers} == {client.cluster.cluster_id if client.cluster else None}


@pytest.mark.asyncio
@pytest.mark.parametrize("acks", [0, 1, -1])
@pytest.mark.parametrize("compression", sorted(codecs.BY_NAME))
async def test_produce_keyed_records_and_consume_them_in_order(
    client: KafkaClient, compression: str, acks: int
) -> None:
    topic = topic_name(f"codec-{compression}")
    admin = Admin(client)
    assert await admin.create_topic(topic, partitions=4, replication_factor=1) == 4
    await admin.wait_for_topic(topic)  # acks=0 failures are silent: the leaders must be ready
    producer = Producer(client, acks=acks, compression=compression)
    sent = [ProducerRecord(f"value-{i}".encode(), f"key-{i % 7}".encode()) for i in range(60)]
    for start in range(0, len(sent), 20):  # three batches per partition
        results = await producer.send(topic, sent[start : start + 20])
        assert sum(r.count for r in results) == 20
        if acks != 0:
            assert all(r.base_offset >= 0 for r in results)
    got = await consume_all(client, topic, len(sent))
    assert sum(map(len, got.values())) == len(sent)
    for partition, records in got.items():
        assert [r.offset for r in records] == list(range(len(records)))  # dense, in order
        for r in records:
            assert r.key is not None
            assert partition_for_key(r.key, 4) == partition
        expected = [s.value for s in sent if s.key is not None and partition_for_key(s.key, 4) == partition]
        assert [r.value for r in records] == expected


@pytest.mark.asyncio
async def test_keys_land_where_the_java_producer_puts_them(client: KafkaClient, broker: RunningBroker) -> None:  # noqa: F811
    topic = topic_name("java-keys")
    partitions = 7
    await Admin(client).create_topic(topic, partitions, 1)
    keys = [f"user-{i}" for i in range(40)] + ["", "ä-unicode", "a-little-bit-longer-string"]
    java = run_java_tool(
        "org.apache.kafka.tools.ConsoleProducer",
        "--bootstrap-server",
        broker.bootstrap,
        "--topic",
        topic,
        "--property",
        "parse.key=true",
        "--property",
        "key.separator=\t",
        # Idempotence (InitProducerId) is the next issue for Tidelog's broker; it does not change partitioning.
        "--producer-property",
        "enable.idempotence=false",
        stdin="".join(f"{k}\tjava-{k}\n" for k in keys),
    )
    assert java.returncode == 0, f"Java ConsoleProducer failed:\n{java.stdout}\n{java.stderr}"
    await Producer(client, acks=1).send(topic, [ProducerRecord(f"ours-{k}".encode(), k.encode()) for k in keys])
    got = await consume_all(client, topic, 2 * len(keys))
    where: dict[bytes, set[int]] = defaultdict(set)
    for partition, records in got.items():
        for r in records:
            assert r.key is not None
            where[r.key].add(partition)
    for k in keys:
        java_and_ours = where[k.encode()]
        assert java_and_ours == {partition_for_key(k.encode(), partitions)}, k


@pytest.mark.asyncio
async def test_list_offsets_earliest_latest_and_by_timestamp(client: KafkaClient) -> None:
    topic = topic_name("offsets")
    await Admin(client).create_topic(topic, 1, 1)
    tp = TopicPartition(topic, 0)
    assert (await list_offsets(client, {tp: EARLIEST}))[tp].offset == 0
    assert (await list_offsets(client, {tp: LATEST}))[tp].offset == 0
    base = int(time.time() * 1000) - 60_000
    producer = Producer(client, acks=-1)
    for i in range(5):  # one batch per timestamp: offsets 2i, 2i+1 at base + 1000 i
        await producer.send(topic, [ProducerRecord(b"x", None, 0, base + 1000 * i) for _ in range(2)])
    found = await list_offsets(client, {tp: EARLIEST})
    assert found[tp].offset == 0
    assert (await list_offsets(client, {tp: LATEST}))[tp].offset == 10
    by_time = await list_offsets(client, {tp: base + 2000})
    assert (by_time[tp].offset, by_time[tp].timestamp) == (4, base + 2000)
    assert (await list_offsets(client, {tp: base + 1500}))[tp].offset == 4  # the first at or after
    assert (await list_offsets(client, {tp: base - 10}))[tp].offset == 0
    assert (await list_offsets(client, {tp: base + 10_000}))[tp].offset == -1  # after every record
    newest = await list_offsets(client, {tp: MAX_TIMESTAMP})
    assert newest[tp].timestamp == base + 4000
    assert newest[tp].offset in (8, 9)
    got = await consume_all(client, topic, 10)
    assert [r.timestamp for r in got[0]] == [base + 1000 * (i // 2) for i in range(10)]  # CreateTime kept


@pytest.mark.asyncio
async def test_fetch_inside_a_batch_skips_earlier_records_and_tolerates_a_partial_tail(client: KafkaClient) -> None:
    topic = topic_name("fetch")
    await Admin(client).create_topic(topic, 1, 1)
    producer = Producer(client, acks=1)
    await producer.send(topic, [ProducerRecord(f"v{i}".encode(), None, 0) for i in range(10)])  # offsets 0-9
    for i in range(3):
        await producer.send(topic, [ProducerRecord(b"y" * 1000, f"big{i}".encode(), 0)])  # offsets 10-12
    tp = TopicPartition(topic, 0)
    part = (await Fetcher(client).fetch({tp: 5}))[tp]
    assert [r.offset for r in part.records()][:5] == [5, 6, 7, 8, 9]
    assert part.high_watermark == 13
    assert part.next_offset == 13
    first_size = next(iter(part.batches()))[1].nbytes
    # A limit that ends inside the second batch: Kafka sends the partial batch (a broker may also stop
    # at the last whole batch); the client drops the partial one either way.
    small = (await Fetcher(client, partition_max_bytes=first_size + 500).fetch({tp: 0}))[tp]
    assert first_size <= small.data.nbytes <= first_size + 500
    assert [h.base_offset for h, _ in small.batches()] == [0]
    assert small.next_offset == 10
    assert [r.value for r in small.records()] == [f"v{i}".encode() for i in range(10)]


@pytest.mark.asyncio
async def test_describe_and_alter_configs(client: KafkaClient) -> None:
    topic = topic_name("configs")
    admin = Admin(client)
    await admin.create_topic(topic, 1, 1, {"retention.ms": "3600000", "cleanup.policy": "compact"})
    configs = await admin.describe_configs(topic)
    assert configs["retention.ms"].value == "3600000"
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.bytes"].is_default
    await admin.alter_configs(topic, {"retention.ms": "120000", "max.message.bytes": "2000000"}, ["cleanup.policy"])
    configs = await admin.describe_configs(topic, ["retention.ms", "max.message.bytes", "cleanup.policy"])
    assert set(configs) == {"retention.ms", "max.message.bytes", "cleanup.policy"}
    assert configs["retention.ms"].value == "120000"
    assert configs["max.message.bytes"].value == "2000000"
    assert configs["cleanup.policy"].value == "delete"
    assert configs["cleanup.policy"].is_default
    with pytest.raises(KafkaError) as info:
        await admin.alter_configs(topic, {"no.such.config": "1"})
    assert info.value.error_code == 40  # INVALID_CONFIG


@pytest.mark.asyncio
async def test_create_partitions_list_describe_and_delete(client: KafkaClient) -> None:
    topic = topic_name("lifecycle")
    admin = Admin(client)
    await admin.create_topic(topic, 2, 1)
    assert topic in await admin.list_topics()
    with pytest.raises(KafkaError) as info:
        await admin.create_topic(topic, 2, 1)
    assert info.value.error_code == 36  # TOPIC_ALREADY_EXISTS
    await admin.create_partitions(topic, 5)
    described = await admin.describe_topic(topic)
    assert sorted(described.partitions) == [0, 1, 2, 3, 4]
    assert described.topic_id is not None
    assert all(p.leader >= 0 and p.isr for p in described.partitions.values())
    with pytest.raises(KafkaError) as info:
        await admin.create_partitions(topic, 3)
    assert info.value.error_code == 37  # INVALID_PARTITIONS: never shrink
    await admin.delete_topics([topic])
    assert topic not in await admin.list_topics()
    with pytest.raises(UnknownTopicOrPartitionError):
        await admin.describe_topic(topic)
    with pytest.raises(UnknownTopicOrPartitionError):
        await admin.delete_topics([topic])


@pytest.mark.asyncio
async def test_invalid_topic_name_is_a_typed_error(client: KafkaClient) -> None:
    with pytest.raises(KafkaError) as info:
        await Admin(client).create_topic("bad/name", 1, 1)
    assert info.value.error_code == 17  # INVALID_TOPIC_EXCEPTION


@pytest.mark.asyncio
async def test_unknown_partition_fails_fast_with_a_typed_error(client: KafkaClient) -> None:
    topic = topic_name("unknown")
    await Admin(client).create_topic(topic, 1, 1)
    started = time.monotonic()
    with pytest.raises(UnknownTopicOrPartitionError):
        await Fetcher(client).fetch({TopicPartition(topic, 9): 0})
    with pytest.raises(UnknownTopicOrPartitionError):
        await Producer(client, acks=1).send("no-such-topic-" + topic, [ProducerRecord(b"v")])
    assert time.monotonic() - started < 20
