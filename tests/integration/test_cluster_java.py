"""Kafka's own system-test clients against a 3-broker Tidelog cluster while the leader dies.

Mirrors Kafka's ``tests/kafkatest/tests/core/replication_test.py`` (hard_shutdown of the leader of
partition 0, then a restart as in hard_bounce) with the same tools the system tests drive:
``org.apache.kafka.tools.VerifiableProducer`` and ``VerifiableConsumer`` from kafka-tools 4.1.1
(jars via ``realkafka.kafka_libs``), both printing one JSON event per line.

Topic: 3 partitions, RF=3, min.insync.replicas=2 (ReplicationTest.TOPIC_CONFIG). The producer sends a
fixed number of increasing integers with acks=all at a throttled rate (~15 s); the consumer runs in a
group with ``--verbose`` (one ``record_data`` per record, as ReplicationTest's ``on_record_consumed``).
Mid-run the leader of partition 0 is SIGKILLed, and restarted once a new leader has taken acks.

Checks (kafkatest ``validate_delivery`` and ``ConsumerEventHandler``, made stricter where Kafka
guarantees more):

- every value the producer saw acknowledged (``producer_send_success``) was consumed, at the very
  partition and offset the ack named (no acked record lost or overwritten by a failover);
- no value sits at two offsets, and each partition's values increase with the offset;
- ``producer_send_error`` events are few and all retriable (NOT_LEADER_OR_FOLLOWER, disconnects...);
  the idempotent producer (retries on) has none at all;
- the consumer only consumes assigned partitions, from contiguous offsets, never behind a commit;
  commits never run ahead of the position; the group's final committed offsets cover every ack.

Two variants, as the system tests run them: the VerifiableProducer's defaults (retries=0, so not
idempotent) with the consumer committing synchronously after every poll, and an idempotent producer
(``enable_idempotence=True`` in kafkatest: retries=1000000, max.in.flight=5) with auto-commit on.
One line per run reports acked/consumed/lost and the producer's errors by type.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from realkafka import BrokerStartError, java_cmd, kafka_libs
from tidelogcluster import TidelogCluster, tidelog_cluster, wait_until

pytestmark = pytest.mark.timeout(300)

TOPIC_PARTITIONS = 3
MAX_MESSAGES = 15_000
THROUGHPUT = 900  # messages/s: ~17 s of producing
KILL_AFTER_ACKS = 3_000  # the leader dies once this many records are acknowledged (~3 s in)
ACKS_BEFORE_RESTART = 3_000  # ... and comes back once the survivors have acknowledged this many more
# retries=0 (the tool's default): every record in flight to the dead leader fails with
# NetworkException("Disconnected from node N"). The sticky partitioner fills 16 KiB batches of
# ~10-byte records for one partition at a time, so that can be a few hundred records (296 seen).
MAX_ERRORS_NON_IDEMPOTENT = MAX_MESSAGES // 10

# Kafka's RetriableException subclasses a producer can meet when a leader dies (the event's
# "exception" field is ``exception.getClass().toString()``).
RETRIABLE = {
    f"class org.apache.kafka.common.errors.{name}"
    for name in (
        "NotLeaderOrFollowerException",
        "NetworkException",
        "DisconnectException",
        "TimeoutException",
        "NotEnoughReplicasException",
        "NotEnoughReplicasAfterAppendException",
        "LeaderNotAvailableException",
        "UnknownTopicOrPartitionException",
        "KafkaStorageException",
    )
}

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDERR
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRefs = stderr
rootLogger.appenderRef.stderr.ref = STDERR
"""


@dataclass
class JavaTool:
    """A Kafka tool running in the background; stdout (JSON events) and stderr go to files."""

    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    _pos: int = 0
    junk: list[str] = field(default_factory=list)

    def new_events(self) -> list[dict[str, Any]]:
        """Events printed since the last call (complete lines only)."""
        with self.out.open("rb") as f:
            f.seek(self._pos)
            data = f.read()
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self._pos += end + 1
        events = []
        for line in data[: end + 1].decode(errors="replace").splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
            elif line.strip():
                self.junk.append(line)
        return events

    def stderr_tail(self, lines: int = 40) -> str:
        text = self.err.read_text(errors="replace") if self.err.exists() else ""
        return f"{self.name} stderr (last {lines} lines):\n" + "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def java_tool(workdir: Path, name: str, main: str, *args: str) -> Iterator[JavaTool]:
    """Start ``main`` with Kafka's classpath; SIGKILL it on the way out if it is still running."""
    try:
        libs = kafka_libs()
        log4j = workdir / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        cmd = java_cmd(libs, main, *args, log4j=log4j)
    except BrokerStartError as exc:
        pytest.fail(f"cannot run the Java client {main}: {exc}", pytrace=False)
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL)
    tool = JavaTool(name, proc, out, err)
    try:
        yield tool
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


@dataclass
class ProducerView:
    """What VerifiableProducer printed: acks (value -> partition, offset), errors, the summary."""

    acked: dict[int, tuple[int, int]] = field(default_factory=dict)
    ack_times: dict[int, list[float]] = field(default_factory=dict)  # partition -> ack timestamps (s)
    errors: list[dict[str, Any]] = field(default_factory=list)
    tool_data: dict[str, Any] | None = None
    started: bool = False
    problems: list[str] = field(default_factory=list)

    def ingest(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            name = e.get("name")
            if name == "startup_complete":
                self.started = True
            elif name == "producer_send_success":
                value = int(e["value"])
                if value in self.acked:
                    self.problems.append(f"value {value} acknowledged twice: {self.acked[value]} and {e}")
                self.acked[value] = (int(e["partition"]), int(e["offset"]))
                self.ack_times.setdefault(int(e["partition"]), []).append(e["timestamp"] / 1000)
            elif name == "producer_send_error":
                self.errors.append(e)
            elif name == "tool_data":
                self.tool_data = e

    def last_acked_offsets(self) -> dict[int, int]:
        last: dict[int, int] = {}
        for partition, offset in self.acked.values():
            last[partition] = max(offset, last.get(partition, -1))
        return last

    def errors_by_type(self) -> Counter[str]:
        return Counter(str(e.get("exception", "?")).rsplit(".", 1)[-1] for e in self.errors)


@dataclass
class ConsumerView:
    """VerifiableConsumer's events, checked the way kafkatest's ConsumerEventHandler (with
    ``verify_offsets=True``) and VerifiableConsumer service's global position/commit checks do."""

    state: str = "dead"
    assignment: set[int] = field(default_factory=set)
    position: dict[int, int] = field(default_factory=dict)  # this assignment's positions
    global_position: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    records: dict[tuple[int, int], int] = field(default_factory=dict)  # (partition, offset) -> value
    record_data_count: int = 0
    total_consumed: int = 0
    assigned_count: int = 0
    commits_ok: int = 0
    commits_failed: list[str] = field(default_factory=list)
    shutdown: bool = False
    violations: list[str] = field(default_factory=list)

    def ingest(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            getattr(self, f"_on_{e.get('name')}", self._on_other)(e)

    def _on_other(self, e: dict[str, Any]) -> None:
        self.violations.append(f"unexpected event {e}")

    def _on_startup_complete(self, e: dict[str, Any]) -> None:
        self.state = "started"

    def _on_shutdown_complete(self, e: dict[str, Any]) -> None:
        self.state, self.shutdown = "dead", True

    def _on_partitions_revoked(self, e: dict[str, Any]) -> None:
        self.state = "rebalancing"
        self.position = {}

    def _on_partitions_assigned(self, e: dict[str, Any]) -> None:
        self.state = "joined"
        self.assigned_count += 1
        self.assignment = {int(tp["partition"]) for tp in e["partitions"]}

    def _on_record_data(self, e: dict[str, Any]) -> None:
        self.record_data_count += 1
        key = (int(e["partition"]), int(e["offset"]))
        value = int(e["value"])
        if self.records.setdefault(key, value) != value:
            self.violations.append(f"offset {key} read twice with different values: {self.records[key]} then {value}")

    def _on_records_consumed(self, e: dict[str, Any]) -> None:
        if self.state != "joined":
            self.violations.append(f"records consumed while {self.state}: {e}")
        for batch in e["partitions"]:
            tp, lo, hi = int(batch["partition"]), int(batch["minOffset"]), int(batch["maxOffset"])
            if tp not in self.assignment:
                self.violations.append(f"consumed partition {tp} not assigned ({sorted(self.assignment)}): {batch}")
            if tp in self.position and self.position[tp] != lo:
                self.violations.append(f"partition {tp}: consumed from {lo}, expected the position {self.position[tp]}")
            if self.committed.get(tp, -1) > lo:
                self.violations.append(f"partition {tp}: consumed from {lo}, behind the commit {self.committed[tp]}")
            if hi - lo + 1 != int(batch["count"]):
                self.violations.append(f"partition {tp}: offsets {lo}..{hi} are not {batch['count']} records")
            self.position[tp] = hi + 1
            self.global_position[tp] = hi + 1
        self.total_consumed += int(e["count"])

    def _on_offsets_committed(self, e: dict[str, Any]) -> None:
        if not e["success"]:
            self.commits_failed.append(str(e.get("error")))
            return
        self.commits_ok += 1
        for c in e["offsets"]:
            tp, offset = int(c["partition"]), int(c["offset"])
            if tp not in self.assignment:
                self.violations.append(f"committed partition {tp} not assigned ({sorted(self.assignment)})")
            if offset > self.global_position.get(tp, -1):
                self.violations.append(
                    f"partition {tp}: commit {offset} ahead of position {self.global_position.get(tp)}"
                )
            self.committed[tp] = offset


def _metadata(cluster: TidelogCluster, topic: str) -> dict[int, Any]:
    md = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=10)
    t = md.topics.get(topic)
    return dict(t.partitions) if t is not None and t.error is None else {}


def _group_committed(cluster: TidelogCluster, group: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(TOPIC_PARTITIONS)], 10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def _pump(deadline_s: float, what: str, *pairs: tuple[JavaTool, ProducerView | ConsumerView], until: Any) -> None:
    """Read the tools' new events until ``until()`` holds; fail with their stderr after the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        for tool, view in pairs:
            view.ingest(tool.new_events())
        if until():
            return
        if time.monotonic() > deadline:
            tails = "\n".join(tool.stderr_tail() for tool, _ in pairs)
            pytest.fail(f"{what}: not reached within {deadline_s:.0f}s\n{tails}")
        time.sleep(0.1)


def _report(request: pytest.FixtureRequest, line: str) -> None:
    """Print ``line`` on the terminal even while pytest captures output."""
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        print(f"\n{line}")


@pytest.mark.parametrize("variant", ["retries0-commitsync", "idempotent-autocommit"])
def test_verifiable_clients_survive_leader_sigkill(
    tmp_path: Path, request: pytest.FixtureRequest, variant: str
) -> None:
    idempotent = variant == "idempotent-autocommit"
    started = time.monotonic()
    topic, group = f"repl-{uuid.uuid4().hex[:6]}", f"vc-{uuid.uuid4().hex[:6]}"
    tools = tmp_path / "tools"
    tools.mkdir()
    producer_config = tools / "producer.properties"
    producer_config.write_text(
        "request.timeout.ms=30000\n"  # kafkatest's producer.properties template
        + ("max.in.flight.requests.per.connection=5\nretries=1000000\nenable.idempotence=true\n" if idempotent else "")
    )
    extra = ("--set", "offsets.topic.num.partitions=3", "--set", "group.initial.rebalance.delay.ms=0")
    with tidelog_cluster(tmp_path / "cluster", 3, *extra) as cluster:
        bootstrap = cluster.bootstrap  # all three brokers, as the tools' command lines would have them
        (tools / "topic").mkdir()
        with java_tool(
            tools / "topic",
            "topic-command",
            "org.apache.kafka.tools.TopicCommand",
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            str(TOPIC_PARTITIONS),
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ) as create:
            assert create.proc.wait(120) == 0, create.out.read_text() + create.stderr_tail()
        wait_until(
            lambda: (
                len(md := _metadata(cluster, topic)) == TOPIC_PARTITIONS
                and all(len(p.isrs) == 3 and p.leader >= 0 for p in md.values())
            ),
            30,
            f"{topic}: every partition led with a full ISR",
        )

        producer, consumer = ProducerView(), ConsumerView()
        consumer_args = ["--enable-autocommit"] if idempotent else []
        (tools / "consumer").mkdir()
        (tools / "producer").mkdir()
        with (
            java_tool(
                tools / "consumer",
                "verifiable-consumer",
                "org.apache.kafka.tools.VerifiableConsumer",
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--group-id",
                group,
                "--reset-policy",
                "earliest",
                "--session-timeout",
                "30000",  # kafkatest's session_timeout_sec
                "--verbose",
                *consumer_args,
            ) as ctool,
            java_tool(
                tools / "producer",
                "verifiable-producer",
                "org.apache.kafka.tools.VerifiableProducer",
                "--bootstrap-server",
                bootstrap,
                "--topic",
                topic,
                "--max-messages",
                str(MAX_MESSAGES),
                "--throughput",
                str(THROUGHPUT),
                "--acks",
                "-1",
                "--producer.config",
                str(producer_config),
            ) as ptool,
        ):
            both = ((ptool, producer), (ctool, consumer))
            # await_startup: the consumer has joined and consumed a few records.
            _pump(60, "consumer joined and consuming", *both, until=lambda: consumer.total_consumed >= 5)
            _pump(60, f"{KILL_AFTER_ACKS} acks", *both, until=lambda: len(producer.acked) >= KILL_AFTER_ACKS)

            victim = _metadata(cluster, topic)[0].leader
            killed_at = time.time()
            cluster.kill(victim)
            acked_at_kill = len(producer.acked)
            wait_until(
                lambda: (
                    _metadata(cluster, topic).get(0) is not None
                    and _metadata(cluster, topic)[0].leader not in (victim, -1)
                ),
                30,
                f"a new leader for partition 0 after killing broker {victim}",
            )
            _pump(
                60,
                "acks from the surviving brokers",
                *both,
                until=lambda: len(producer.acked) >= acked_at_kill + ACKS_BEFORE_RESTART,
            )
            cluster.restart(victim)
            restarted_at = time.time()

            _pump(120, "the producer sent every message and exited", *both, until=lambda: ptool.proc.poll() is not None)
            producer.ingest(ptool.new_events())
            assert ptool.proc.returncode == 0, ptool.stderr_tail()
            last_acked = producer.last_acked_offsets()
            # await_consumed_offsets: consumed (and, when committing by hand, committed) past every ack.
            _pump(
                90,
                f"the consumer past the last acked offsets {last_acked}",
                *both,
                until=lambda: all(
                    consumer.global_position.get(p, -1) > o and (idempotent or consumer.committed.get(p, -1) > o)
                    for p, o in last_acked.items()
                ),
            )
            ctool.proc.send_signal(signal.SIGTERM)
            assert ctool.proc.wait(60) in (0, 128 + signal.SIGTERM, -signal.SIGTERM), ctool.stderr_tail()
            consumer.ingest(ctool.new_events())

        wait_until(
            lambda: all(victim in p.isrs for p in _metadata(cluster, topic).values()),
            60,
            f"broker {victim} back in every ISR after its restart",
        )
        final_committed = _group_committed(cluster, group, topic)

    # ---- validation (validate_delivery and more) ----
    acked = producer.acked
    consumed_values = Counter(consumer.records.values())
    lost = sorted(set(acked) - set(consumed_values))
    misplaced = {v: (pos, consumer.records.get(pos)) for v, pos in acked.items() if consumer.records.get(pos) != v}
    twice = sorted(v for v, n in consumed_values.items() if n > 1)
    errors = producer.errors_by_type()
    p0_times = [t for t in producer.ack_times.get(0, []) if t > killed_at - 1]
    p0_gap = max((b - a for a, b in pairwise(p0_times)), default=float("nan"))
    _report(
        request,
        f"[{variant}] acked={len(acked)} consumed={consumer.total_consumed} distinct={len(consumed_values)} "
        f"lost={len(lost)} misplaced={len(misplaced)} errors={sum(errors.values())} {dict(errors)} "
        f"killed=broker {victim} after {acked_at_kill} acks, longest p0 ack gap {p0_gap:.1f}s, "
        f"restart {restarted_at - killed_at:.1f}s after the kill, "
        f"rebalances={consumer.assigned_count} commits ok={consumer.commits_ok} failed={len(consumer.commits_failed)} "
        f"run={time.monotonic() - started:.0f}s",
    )

    assert producer.started
    assert not producer.problems, producer.problems[:5]
    assert producer.tool_data is not None, "VerifiableProducer printed no tool_data summary"
    assert producer.tool_data["sent"] == MAX_MESSAGES, producer.tool_data
    assert producer.tool_data["acked"] == len(acked), producer.tool_data
    assert len(acked) + len(producer.errors) == MAX_MESSAGES, (len(acked), len(producer.errors))
    assert not ptool.junk, ptool.junk[:5]
    assert not ctool.junk, ctool.junk[:5]
    not_retriable = [e for e in producer.errors if e.get("exception") not in RETRIABLE]
    before_kill = [e for e in producer.errors if e["timestamp"] / 1000 < killed_at]
    assert not before_kill, f"send errors before any broker failed: {before_kill[:5]}"
    assert not not_retriable, f"non-retriable producer errors: {not_retriable[:5]}"
    if idempotent:
        assert not producer.errors, f"the idempotent producer (retries on) still failed sends: {producer.errors[:5]}"
    else:
        assert len(producer.errors) <= MAX_ERRORS_NON_IDEMPOTENT, f"{len(producer.errors)} errors: {dict(errors)}"

    assert consumer.shutdown, "VerifiableConsumer printed no shutdown_complete"
    assert not consumer.violations, consumer.violations[:10]
    assert consumer.record_data_count == consumer.total_consumed, (consumer.record_data_count, consumer.total_consumed)
    assert not lost, (
        f"{len(lost)} acknowledged values never consumed, e.g. "
        + ", ".join(f"{v} at {acked[v]}" for v in lost[:10])
        + f"; consumer positions {consumer.global_position}"
    )
    assert not misplaced, f"acked (partition, offset) holds another value when consumed: {list(misplaced.items())[:10]}"
    assert not twice, f"{len(twice)} values stored at two offsets (duplicates in the log), e.g. {twice[:10]}"
    for partition in range(TOPIC_PARTITIONS):
        offsets = sorted(o for p, o in consumer.records if p == partition)
        values = [consumer.records[(partition, o)] for o in offsets]
        assert offsets, f"partition {partition}: nothing consumed"
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), f"partition {partition}: offset gaps"
        assert values == sorted(values), f"partition {partition}: values out of order in the log"
    for partition, offset in producer.last_acked_offsets().items():
        assert final_committed.get(partition, -1) > offset, (
            f"partition {partition}: the group's committed offset {final_committed.get(partition)} "
            f"does not cover the last ack at {offset} (all: {final_committed})"
        )
        assert final_committed[partition] <= consumer.global_position[partition], (
            final_committed,
            consumer.global_position,
        )
