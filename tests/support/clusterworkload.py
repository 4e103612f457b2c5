"""The Jepsen-style workload the cluster fault tests run while a nemesis breaks things.

``Workload`` runs idempotent ``acks=all`` producers (librdkafka) sending unique values (``p<i>-<n>``,
keyed by value so they spread over the partitions), and one live consumer (assign + poll from
offset 0). Every send attempt is an ``Op`` in the history: invoked, then acknowledged with its
partition and offset (``ok``), or indeterminate (``info``: any delivery error, since a timed-out or
failed idempotent send may still have been written). Every record the live consumer read is kept
as (partition, offset, value), in order.

After the nemesis healed the cluster, ``wait_healthy`` waits until every partition has a leader
and a full ISR, ``read_all`` reads every partition from offset 0 up to its high watermark, and
``verdict`` runs ``history.check`` over the acknowledged sends and both reads, adding what
``history`` cannot see from a read alone:

* vanished: a (partition, offset) the live consumer read that the final read does not hold
  (something was read above the high watermark, then truncated away);
* reordered: two acknowledged sends of one producer to one partition whose offsets are in the
  opposite order of the sends (an idempotent producer keeps per-partition order);
* fatal: fatal idempotence errors librdkafka raised (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER: the broker
  lost track of a producer's sequence); the producer is then replaced, and the run fails.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from history import Verdict, check
from tidelogcluster import TidelogCluster, wait_until

FAILED = object()  # what a producer call answered when it raised a fatal error


@dataclass
class Op:
    value: str
    producer: int
    invoked: float
    outcome: str = "pending"  # ok | info
    partition: int = -1
    offset: int = -1
    error: str = ""


@dataclass
class Report:
    verdict: Verdict
    attempted: int
    indeterminate: int
    errors: Counter[str]
    fatal: list[str]
    vanished: list[tuple[int, int, str]]
    reordered: list[tuple[str, str, int, int]]
    live_read: int
    final_read: int

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.vanished and not self.reordered and not self.fatal

    def line(self, scenario: str, faults: int) -> str:
        v = self.verdict
        return (
            f"[{scenario}] acked={v.acked} attempted={self.attempted} indeterminate={self.indeterminate} "
            f"faults={faults} lost={len(v.lost)} duplicates={len(v.duplicated)} "
            f"inconsistent={len(v.inconsistent)} nonmonotonic={len(v.nonmonotonic)} "
            f"gaps={sum(len(g) for g in v.gaps.values())} vanished={len(self.vanished)} "
            f"reordered={len(self.reordered)} fatal={len(self.fatal)} "
            f"read_live={self.live_read} read_final={self.final_read} errors={dict(self.errors)}"
        )

    def details(self, ops: list[Op], limit: int = 10) -> str:
        """The failing part of the history, for the assertion message."""
        v = self.verdict
        by_value = {op.value: op for op in ops}
        lost = sorted(v.lost, key=lambda x: by_value[x].invoked)[:limit]
        lines = [f"lost (acked, never read): {[(x, by_value[x].partition, by_value[x].offset) for x in lost]}"]
        lines.append(f"duplicated: {list(v.duplicated.items())[:limit]}")
        lines.append(f"inconsistent: {v.inconsistent[:limit]}")
        lines.append(f"nonmonotonic: {v.nonmonotonic[:limit]}")
        lines.append(f"gaps: { {p: g[:limit] for p, g in v.gaps.items()} }")
        lines.append(f"vanished: {self.vanished[:limit]}")
        lines.append(f"reordered: {self.reordered[:limit]}")
        lines.append(f"fatal: {self.fatal[:limit]}")
        return "\n".join(lines)


def admin(cluster: TidelogCluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap, "socket.timeout.ms": 3000})


def partitions(cluster: TidelogCluster, topic: str) -> dict[int, Any]:
    """Partition metadata (leader, replicas, isrs) as some broker answers it; {} if none does."""
    try:
        md = admin(cluster).list_topics(topic, timeout=5)
    except KafkaException:
        return {}
    t = md.topics.get(topic)
    return dict(t.partitions) if t is not None and t.error is None else {}


def leader_of(cluster: TidelogCluster, topic: str, partition: int) -> int:
    found: list[int] = []

    def led() -> bool:
        p = partitions(cluster, topic).get(partition)
        if p is not None and p.leader > 0:
            found.append(p.leader)
            return True
        return False

    wait_until(led, 30, f"{topic}-{partition} has a leader")
    return found[-1]


def healthy(cluster: TidelogCluster, topic: str, count: int, rf: int = 3) -> bool:
    parts = partitions(cluster, topic)
    return len(parts) == count and all(p.leader > 0 and len(p.isrs) == rf for p in parts.values())


def wait_healthy(cluster: TidelogCluster, topic: str, count: int, timeout: float = 60.0) -> None:
    wait_until(lambda: healthy(cluster, topic, count), timeout, f"{topic}: every partition led with a full ISR")


def create_topic(cluster: TidelogCluster, topic: str, count: int = 3, rf: int = 3, min_isr: int = 2) -> None:
    client = admin(cluster)
    futures = client.create_topics(
        [NewTopic(topic, count, rf, config={"min.insync.replicas": str(min_isr)})], operation_timeout=10
    )
    futures[topic].result(30)
    wait_healthy(cluster, topic, count, 30)


@dataclass
class Workload:
    cluster: TidelogCluster
    topic: str
    partitions: int = 3
    producers: int = 2
    interval_s: float = 0.004
    ops: list[Op] = field(default_factory=list)
    live: list[tuple[int, int, str]] = field(default_factory=list)
    fatal: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _stop_reading: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _crashes: list[BaseException] = field(default_factory=list)

    def start(self) -> None:
        for i in range(self.producers):
            self._threads.append(threading.Thread(target=self._guard, args=(self._produce, i), daemon=True))
        self._threads.append(threading.Thread(target=self._guard, args=(self._consume,), daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop sending, wait for every send to settle, then stop the live consumer."""
        self._stop.set()
        for t in self._threads[:-1]:
            t.join(90)
        self._stop_reading.set()
        self._threads[-1].join(90)  # (close() may wait for a coordinator the scenario just restarted)
        assert not self._crashes, f"workload thread failed: {self._crashes!r}"
        assert all(not t.is_alive() for t in self._threads), "workload threads did not stop"

    def acked(self) -> int:
        return sum(1 for op in list(self.ops) if op.outcome == "ok")

    def _guard(self, body: Any, *args: Any) -> None:
        try:
            body(*args)
        except BaseException as exc:
            self._crashes.append(exc)

    def _new_producer(self, fatal: threading.Event) -> Producer:
        def on_error(err: KafkaError) -> None:
            if err.fatal() and not fatal.is_set():
                self.fatal.append(str(err))
                fatal.set()

        return Producer(
            {
                "bootstrap.servers": self.cluster.bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "request.timeout.ms": 5000,
                "message.timeout.ms": 30000,
                "socket.timeout.ms": 5000,
                "topic.metadata.refresh.interval.ms": 2000,
                "error_cb": on_error,
            }
        )

    def _produce(self, index: int) -> None:
        fatal = threading.Event()
        producer = self._new_producer(fatal)
        n = 0

        def report(op: Op) -> Any:
            def on_delivery(err: KafkaError | None, msg: Any) -> None:
                # No lock here: librdkafka calls this from poll()/flush(), wherever they run.
                if err is None:
                    op.partition, op.offset, op.outcome = msg.partition(), msg.offset(), "ok"
                else:
                    op.error, op.outcome = str(err).split(",")[0], "info"

            return on_delivery

        def call(method: Any, *args: Any, **kwargs: Any) -> Any:
            """A producer call; a fatal idempotence error (raised by any of them) marks the producer."""
            try:
                return method(*args, **kwargs)
            except KafkaException as exc:
                error = exc.args[0]
                if not (error.fatal() or error.code() == KafkaError._FATAL):
                    raise
                if not fatal.is_set():
                    self.fatal.append(str(error))
                fatal.set()
                return FAILED

        while not self._stop.is_set():
            if fatal.is_set():
                # The idempotent producer is unusable: settle what it holds (as indeterminate) and start anew.
                call(producer.purge)
                call(producer.flush, 10)
                producer = self._new_producer(fatal := threading.Event())
            value = f"p{index}-{n}"
            op = Op(value, index, time.monotonic())
            try:
                if (
                    call(producer.produce, self.topic, value.encode(), key=value.encode(), on_delivery=report(op))
                    is FAILED
                ):
                    continue  # never enqueued
            except BufferError:
                call(producer.poll, 0.05)
                continue
            self.ops.append(op)
            n += 1
            call(producer.poll, 0)
            time.sleep(self.interval_s)
        remaining = call(producer.flush, 60)
        if remaining:
            call(producer.purge)
            call(producer.flush, 5)
        for op in list(self.ops):
            if op.producer == index and op.outcome == "pending":
                op.error, op.outcome = "never settled", "info"

    def _consume(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.cluster.bootstrap,
                "group.id": f"live-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "topic.metadata.refresh.interval.ms": 2000,
                "socket.timeout.ms": 5000,
            }
        )
        try:
            consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
            while not self._stop_reading.is_set():
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                self.live.append((msg.partition(), msg.offset(), msg.value().decode()))
        finally:
            consumer.close()

    def read_all(self, timeout: float = 60.0) -> list[tuple[int, int, str]]:
        """Every record of every partition from offset 0 to its high watermark (fresh consumer)."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.cluster.bootstrap,
                "group.id": f"final-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        got: list[tuple[int, int, str]] = []
        try:
            ends = {
                p: consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                for p in range(self.partitions)
            }
            consumer.assign([TopicPartition(self.topic, p, 0) for p in range(self.partitions)])
            positions = dict.fromkeys(range(self.partitions), 0)
            deadline = time.monotonic() + timeout
            while any(positions[p] < ends[p] for p in positions):
                assert time.monotonic() < deadline, f"final read stuck at {positions} of {ends}"
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                got.append((msg.partition(), msg.offset(), msg.value().decode()))
                positions[msg.partition()] = msg.offset() + 1
        finally:
            consumer.close()
        return got

    def verdict(self, final: list[tuple[int, int, str]]) -> Report:
        ops = list(self.ops)
        acked = [(op.value, op.partition, op.offset) for op in ops if op.outcome == "ok"]
        verdict = check(acked, [self.live, final])
        final_at = {(p, o) for p, o, _v in final}
        vanished = [(p, o, v) for p, o, v in self.live if (p, o) not in final_at]
        reordered: list[tuple[str, str, int, int]] = []
        last: dict[tuple[int, int], tuple[str, int]] = {}
        for op in sorted((op for op in ops if op.outcome == "ok"), key=lambda op: int(op.value.split("-")[1])):
            key = (op.producer, op.partition)
            prev = last.get(key)
            if prev is not None and op.offset <= prev[1]:
                reordered.append((prev[0], op.value, prev[1], op.offset))
            last[key] = (op.value, op.offset)
        return Report(
            verdict=verdict,
            attempted=len(ops),
            indeterminate=sum(1 for op in ops if op.outcome == "info"),
            errors=Counter(op.error for op in ops if op.error),
            fatal=list(self.fatal),
            vanished=vanished,
            reordered=reordered,
            live_read=len(self.live),
            final_read=len(final),
        )


@contextlib.contextmanager
def running(workload: Workload) -> Iterator[Workload]:
    workload.start()
    try:
        yield workload
    finally:
        workload.stop()
