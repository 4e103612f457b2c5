"""Consumer groups with real clients: each partition read by one member; when a member dies its
partitions move to the survivors and nothing is lost; committed offsets survive a broker restart;
the client-side assignors (range, roundrobin, cooperative-sticky) all work; kafka-python's defaults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from groupreader import read_in_group
from tidelogbroker import RunningBroker, tidelog_broker

MEMBER = Path(__file__).with_name("group_member.py")


def create(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(15)


def produce(bootstrap: str, topic: str, values: list[str]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    for i, v in enumerate(values):
        producer.produce(topic, value=v.encode(), key=str(i).encode())
    assert producer.flush(30) == 0


class Member:
    """A member process whose output is collected by a thread."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topic: str,
        strategy: str = "range",
        mode: str = "auto",
        instance_id: str | None = None,
    ) -> None:
        env = {**os.environ, "GROUP_INSTANCE_ID": instance_id or ""}
        self.proc = subprocess.Popen(
            [sys.executable, str(MEMBER), bootstrap, group, topic, strategy, mode],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.records: list[tuple[int, int, str]] = []
        self.assignments: list[set[int]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("ASSIGNED"):
                parts = line.split(" ", 1)[1].strip()
                self.assignments.append({int(p) for p in parts.split(",") if p})
            else:
                p, o, v = line.split(" ", 2)
                self.records.append((int(p), int(o), v.strip()))

    @property
    def assignment(self) -> set[int]:
        return self.assignments[-1] if self.assignments else set()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._thread.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def group_stable(bootstrap: str, group: str, members: int) -> bool:
    from confluent_kafka import ConsumerGroupState

    admin = AdminClient({"bootstrap.servers": bootstrap})
    described = admin.describe_consumer_groups([group])[group].result(10)
    return bool(described.state == ConsumerGroupState.STABLE and len(described.members) == members)


def wait_until(what: str, check: object, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_member_death_moves_partitions_and_loses_nothing(broker: RunningBroker, strategy: str) -> None:
    topic, group = f"grp-{uuid.uuid4().hex[:6]}", f"g-{uuid.uuid4().hex[:6]}"
    create(broker.bootstrap, topic, 4)
    a = Member(broker.bootstrap, group, topic, strategy)
    b = Member(broker.bootstrap, group, topic, strategy)
    try:
        wait_until(
            "two members sharing 4 partitions",
            lambda: len(a.assignment) + len(b.assignment) == 4 and a.assignment and b.assignment,
        )
        assert not (a.assignment & b.assignment), "a partition was given to two members"
        first = [f"first-{i}" for i in range(200)]
        produce(broker.bootstrap, topic, first)
        wait_until("the first records consumed", lambda: {r[2] for r in a.records + b.records} >= set(first))
        b.kill()  # a crash: no LeaveGroup; the broker notices after session.timeout.ms
        wait_until("the survivor owning every partition", lambda: a.assignment == {0, 1, 2, 3})
        second = [f"second-{i}" for i in range(200)]
        produce(broker.bootstrap, topic, second)
        wait_until("every record consumed", lambda: {r[2] for r in a.records + b.records} >= set(first + second))
    finally:
        a.stop()
        b.stop()


@pytest.mark.slow
def test_three_members_one_killed_nothing_processed_is_reread_and_it_resumes(broker: RunningBroker) -> None:
    """Manual commits after processing: a killed member's partitions move to the two survivors, which
    start after its last commit; restarted, it resumes from the committed offsets."""
    topic, group = f"grp3-{uuid.uuid4().hex[:6]}", f"g3-{uuid.uuid4().hex[:6]}"
    create(broker.bootstrap, topic, 6)
    members = [Member(broker.bootstrap, group, topic, "range", "manual") for _ in range(3)]
    killed: list[Member] = []
    try:
        wait_until(
            "three members sharing 6 partitions",
            lambda: sum(len(m.assignment) for m in members) == 6 and all(m.assignment for m in members),
        )
        first = [f"a-{i}" for i in range(300)]
        produce(broker.bootstrap, topic, first)
        wait_until("the first records processed", lambda: {r[2] for m in members for r in m.records} >= set(first))
        victim = members.pop()
        killed.append(victim)
        processed_by_victim = {(p, o) for p, o, _ in victim.records}
        victim.kill()
        wait_until(
            "two survivors owning all 6 partitions",
            lambda: (
                set().union(*(m.assignment for m in members)) == set(range(6))
                and sum(len(m.assignment) for m in members) == 6
            ),
        )
        second = [f"b-{i}" for i in range(300)]
        produce(broker.bootstrap, topic, second)
        wait_until(
            "every record processed",
            lambda: {r[2] for m in [*members, victim] for r in m.records} >= set(first + second),
        )
        reread = {(p, o) for m in members for p, o, _ in m.records} & processed_by_victim
        assert not reread, f"records the dead member processed and committed were read again: {sorted(reread)[:5]}"
        back = Member(broker.bootstrap, group, topic, "range", "manual")
        members.append(back)
        wait_until("the returning member getting partitions", lambda: bool(back.assignment))
        third = [f"c-{i}" for i in range(60)]
        produce(broker.bootstrap, topic, third)
        wait_until("the last records processed", lambda: {r[2] for m in members for r in m.records} >= set(third))
        assert not {r[2] for r in back.records} & set(first + second)  # it resumed from the commits
    finally:
        for m in members + killed:
            m.stop()


def test_static_member_restart_keeps_its_partitions_without_a_rebalance(broker: RunningBroker) -> None:
    """A static member (group.instance.id) that comes back within its session timeout gets its
    partitions back and the other member is never revoked (KIP-345)."""
    topic, group = f"static-{uuid.uuid4().hex[:6]}", f"s-{uuid.uuid4().hex[:6]}"
    create(broker.bootstrap, topic, 4)
    a = Member(broker.bootstrap, group, topic, instance_id="static-a")
    b = Member(broker.bootstrap, group, topic, instance_id="static-b")
    back: Member | None = None
    try:
        wait_until(
            "two static members sharing 4 partitions",
            lambda: len(a.assignment) + len(b.assignment) == 4 and a.assignment and b.assignment,
        )
        wait_until("the group stable with both members", lambda: group_stable(broker.bootstrap, group, 2))
        a_changes, b_partitions = len(a.assignments), b.assignment
        b.kill()  # no LeaveGroup: a static member's absence is bridged by its session timeout
        back = Member(broker.bootstrap, group, topic, instance_id="static-b")
        wait_until("the static member back with its partitions", lambda: back is not None and back.assignment)
        assert back.assignment == b_partitions
        produce(broker.bootstrap, topic, [f"s-{i}" for i in range(40)])
        wait_until(
            "records flowing to both", lambda: {r[2] for r in a.records + back.records} >= {f"s-{i}" for i in range(40)}
        )
        assert len(a.assignments) == a_changes, "the other member was revoked: a rebalance happened"
    finally:
        for m in (a, b, back):
            if m is not None:
                m.stop()


def test_committed_offsets_survive_a_broker_restart(tmp_path: Path) -> None:
    with tidelog_broker(tmp_path, "--set", "group.initial.rebalance.delay.ms=0") as broker:
        topic, group = "durable", "resumer"
        create(broker.bootstrap, topic, 2)
        produce(broker.bootstrap, topic, [f"v{i}" for i in range(100)])
        consumer = read_in_group(broker.bootstrap, group, topic, 60)
        consumer.commit(asynchronous=False)
        committed = {
            tp.partition: tp.offset
            for tp in consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], 10)
        }
        consumer.close()
        assert sum(committed.values()) >= 60
        broker.stop(signal.SIGKILL)
        broker.restart()
        again = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "error"})
        after = {
            tp.partition: tp.offset for tp in again.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], 10)
        }
        assert after == committed
        again.subscribe([topic])
        rest = []
        deadline = time.monotonic() + 30
        while len(rest) < 100 - sum(committed.values()) and time.monotonic() < deadline:
            msg = again.poll(0.5)
            if msg is not None and msg.error() is None:
                rest.append(msg)
        again.close()
        assert all(m.offset() >= committed[m.partition()] for m in rest)  # resumed, not restarted
        assert len(rest) == 100 - sum(committed.values())


def test_kafka_python_group_consumer_with_defaults(broker: RunningBroker) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient

    topic, group = f"kpg-{uuid.uuid4().hex[:6]}", f"kp-{uuid.uuid4().hex[:6]}"
    create(broker.bootstrap, topic, 3)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)  # idempotent, acks=all: the defaults
    for i in range(90):
        producer.send(topic, value=b"%d" % i)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        consumer_timeout_ms=8000,
    )
    values = sorted(int(m.value) for m in consumer)
    consumer.commit()
    consumer.close()
    assert values == list(range(90))
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    for i in range(5):  # 5 more records: the group's lag is 5
        producer.send(topic, value=b"late-%d" % i, partition=0)
    producer.flush()
    producer.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    lag = [line for line in text.splitlines() if line.startswith(f'tidelog_consumer_lag{{group="{group}"')]
    assert sum(float(line.split()[-1]) for line in lag) == 5
    assert f'tidelog_group_state{{group="{group}",state="Empty"}} 1.0' in text
    assert "tidelog_group_rebalances_total" in text
    listed = admin.list_groups()
    assert group in repr(listed)
    offsets = admin.list_group_offsets({group: None})
    assert "90" in repr(offsets) or sum(o.offset for o in offsets[group].values()) == 90
    admin.close()


def test_aiokafka_group_consumer(broker: RunningBroker) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer

    topic, group = f"aiog-{uuid.uuid4().hex[:6]}", f"aio-{uuid.uuid4().hex[:6]}"
    create(broker.bootstrap, topic, 3)
    produce(broker.bootstrap, topic, [f"aio-{i}" for i in range(60)])

    async def scenario() -> list[str]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            out: list[str] = []
            while len(out) < 60:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 20)
                out += [m.value.decode() for msgs in batch.values() for m in msgs]
            await consumer.commit()
            committed = [await consumer.committed(tp) for tp in consumer.assignment()]
            assert sum(c or 0 for c in committed) == 60
            return out
        finally:
            await consumer.stop()

    assert sorted(asyncio.run(scenario())) == sorted(f"aio-{i}" for i in range(60))


def test_auto_offset_reset_latest_and_none(broker: RunningBroker) -> None:
    topic = f"reset-{uuid.uuid4().hex[:6]}"
    create(broker.bootstrap, topic, 1)
    produce(broker.bootstrap, topic, ["old-1", "old-2"])

    def consumer(reset: str) -> Consumer:
        c = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": f"r-{reset}-{uuid.uuid4().hex[:4]}",
                "auto.offset.reset": reset,
                "enable.auto.commit": False,
            }
        )
        c.subscribe([topic])
        return c

    def next_event(c: Consumer, timeout: float = 20) -> object:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None:
                return msg
        raise AssertionError("no record or error arrived")

    latest = consumer("latest")
    wait_until("an assignment", lambda: latest.poll(0.2) is None and bool(latest.assignment()))
    received: list[bytes] = []
    for i in range(50):  # keep producing until the consumer, positioned at "latest", reads something
        produce(broker.bootstrap, topic, [f"new-{i}"])
        msg = latest.poll(0.5)
        if msg is not None and msg.error() is None:
            received.append(msg.value())
            break
    latest.close()
    assert received
    assert not [v for v in received if v.startswith(b"old")]  # "latest": nothing from before joining
    none = consumer("error")  # librdkafka's name for Kafka's auto.offset.reset=none
    event = next_event(none)
    none.close()
    assert event.error() is not None  # type: ignore[attr-defined]
    assert "offset" in str(event.error()).lower()  # type: ignore[attr-defined]


def test_delete_groups_and_offsets(broker: RunningBroker) -> None:
    from kafka import TopicPartition as KpTp
    from kafka.admin import KafkaAdminClient

    topic, group = f"del-{uuid.uuid4().hex[:6]}", f"del-{uuid.uuid4().hex[:6]}"
    create(broker.bootstrap, topic, 2)
    produce(broker.bootstrap, topic, [f"d{i}" for i in range(10)])
    c = read_in_group(broker.bootstrap, group, topic, 10, timeout=20)
    c.commit(asynchronous=False)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(Exception, match=r"NON_EMPTY_GROUP|not empty"):
        admin.delete_consumer_groups([group])[group].result(10)
    c.close()
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    kp.delete_group_offsets(group, [KpTp(topic, 0)])
    remaining = kp.list_group_offsets({group: None})
    assert "partition=0" not in repr(remaining)
    assert "partition=1" in repr(remaining)
    kp.close()
    admin.delete_consumer_groups([group])[group].result(10)
    with pytest.raises(Exception, match=r"GROUP_ID_NOT_FOUND|does not exist"):
        admin.delete_consumer_groups([group])[group].result(10)


def test_members_starting_together_with_the_default_join_delay(own_broker: RunningBroker) -> None:
    """group.initial.rebalance.delay.ms at Kafka's default (3 s): members that join an empty group
    together land in one generation and share the partitions."""
    topic, group = "together", "together-group"
    create(own_broker.bootstrap, topic, 4)
    members = [Member(own_broker.bootstrap, group, topic) for _ in range(2)]
    try:
        wait_until(
            "both members assigned",
            lambda: all(m.assignment for m in members) and sum(len(m.assignment) for m in members) == 4,
        )
        assert not (members[0].assignment & members[1].assignment)
        # one generation from the start: nobody ever held all four partitions alone
        assert all(len(a) < 4 for m in members for a in m.assignments if a), [m.assignments for m in members]
    finally:
        for m in members:
            m.stop()
