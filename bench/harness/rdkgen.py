"""librdkafka load generator (confluent-kafka), run as a pinned subprocess by ``generators``.

Modes, each printing one JSON object on stdout (``e2e-consume`` prints ``READY`` first):
``ready`` (exit 0 once a metadata request succeeds), ``create`` (a topic), ``leaders`` (a topic's
leader and replicas per partition), ``produce`` (flat out, batched), ``consume`` (from the
beginning, no group), ``steady`` (fixed rate, ack latency from delivery reports; with
``--failover`` the harness kills a partition leader mid-run), ``e2e-produce`` (fixed rate, the
intended send time in the first 8 bytes) and ``e2e-consume`` (latency = receive time - intended
send time, so a stalled broker is not hidden by coordinated omission). Both e2e sides use
CLOCK_MONOTONIC, which is system-wide on Linux. Standalone: imports nothing from the harness.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic


def _payload(size: int) -> bytearray:
    # Like ProducerPerformance: one buffer of random upper-case letters, reused for every record.
    rnd = random.Random(42)
    return bytearray(rnd.randint(65, 90) for _ in range(size))


def _client(a: argparse.Namespace, conf: dict[str, Any]) -> dict[str, Any]:
    """``conf`` with the pass-through ``-X key=value`` properties (e.g. security settings) on top."""
    return {**conf, **dict(kv.split("=", 1) for kv in a.extra)}


def _ready(a: argparse.Namespace) -> int:
    admin = AdminClient(_client(a, {"bootstrap.servers": a.bootstrap}))
    try:
        md = admin.list_topics(timeout=a.timeout)
    except KafkaException:
        return 1
    return 0 if len(md.brokers) >= a.min_brokers else 1


def _create(a: argparse.Namespace) -> int:
    admin = AdminClient(_client(a, {"bootstrap.servers": a.bootstrap}))
    config = dict(kv.split("=", 1) for kv in a.config)
    topic = NewTopic(a.topic, num_partitions=a.partitions, replication_factor=a.replication, config=config)
    fut = admin.create_topics([topic], operation_timeout=30)[a.topic]
    fut.result(timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until every partition has a leader and a full ISR
        md = admin.list_topics(a.topic, timeout=5).topics.get(a.topic)
        if (
            md
            and md.error is None
            and len(md.partitions) == a.partitions
            and all(p.leader >= 0 and len(p.isrs) >= a.replication for p in md.partitions.values())
        ):
            return 0
        time.sleep(0.05)
    raise SystemExit(f"topic {a.topic}: some partition has no leader or an incomplete ISR after 30 s")


def _leaders(a: argparse.Namespace) -> dict[str, Any]:
    md = AdminClient(_client(a, {"bootstrap.servers": a.bootstrap})).list_topics(a.topic, timeout=10).topics[a.topic]
    return {str(q): {"leader": p.leader, "replicas": list(p.replicas)} for q, p in md.partitions.items()}


def _producer(a: argparse.Namespace, errors: list[int]) -> Producer:
    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors[0] += 1

    return Producer(
        _client(
            a,
            {
                "bootstrap.servers": a.bootstrap,
                "acks": a.acks,
                "linger.ms": a.linger_ms,
                "batch.size": a.batch_size,
                "compression.type": a.compression,
                "queue.buffering.max.messages": 2_000_000,
                "queue.buffering.max.kbytes": 2_097_151,
                "delivery.report.only.error": True,
                # Kafka's Java clients and brokers set TCP_NODELAY; librdkafka leaves Nagle on by default.
                "socket.nagle.disable": True,
                "on_delivery": on_delivery,
            },
        )
    )


def _produce(a: argparse.Namespace) -> dict[str, Any]:
    errors = [0]
    p = _producer(a, errors)
    value = bytes(_payload(a.size))
    topic, produce, poll = a.topic, p.produce, p.poll
    t0 = time.monotonic()
    for i in range(a.count):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:
                poll(0.001)
        if i & 1023 == 0:
            poll(0)
    left = p.flush(120)
    secs = time.monotonic() - t0
    return {"records": a.count - left, "seconds": secs, "errors": errors[0] + left}


def _assign(a: argparse.Namespace) -> Consumer:
    c = Consumer(
        _client(
            a,
            {
                "bootstrap.servers": a.bootstrap,
                "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
                "enable.partition.eof": False,
                "socket.nagle.disable": True,
                # librdkafka >= 2.4 postpones a partition's next fetch by fetch.queue.backoff.ms (1 s)
                # once its local queue passes queued.min.messages.
                "fetch.queue.backoff.ms": 1,
            },
        )
    )
    md = c.list_topics(a.topic, timeout=10).topics[a.topic]
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in md.partitions])
    return c


def _consume(a: argparse.Namespace) -> dict[str, Any]:
    c = _assign(a)
    got, errors, t_first, t_last = 0, 0, 0.0, 0.0
    first_batch = 0
    idle_deadline = time.monotonic() + a.timeout
    while got < a.count and time.monotonic() < idle_deadline:
        # consume() blocks until num_messages or the timeout: never ask for more than is left.
        msgs = c.consume(num_messages=min(10000, a.count - got), timeout=0.5)
        if not msgs:
            continue
        now = time.monotonic()
        idle_deadline = now + a.timeout
        bad = sum(1 for m in msgs if m.error() is not None)
        errors += bad
        if got == 0:
            t_first, first_batch = now, len(msgs) - bad
        got += len(msgs) - bad
        t_last = now
    c.close()
    # Throughput from the first batch's arrival to the last's: excludes connection set-up.
    return {
        "records": got - first_batch,
        "seconds": max(t_last - t_first, 1e-9),
        "consumed": got,
        "errors": errors + (a.count - got),
    }


def _e2e_produce(a: argparse.Namespace) -> dict[str, Any]:
    errors = [0]
    p = _producer(a, errors)
    buf = _payload(a.size)
    interval = 1e9 / a.rate
    t0 = time.monotonic_ns() + 50_000_000
    i, n, topic = 0, a.count, a.topic
    while i < n:
        now = time.monotonic_ns()
        due = min(n, int((now - t0) / interval) + 1) if now >= t0 else 0
        while i < due:
            struct.pack_into("<q", buf, 0, t0 + int(i * interval))
            try:
                p.produce(topic, bytes(buf))
            except BufferError:
                p.poll(0.001)
                continue
            i += 1
        p.poll(0)
        if i < n:
            wait = (t0 + i * interval - time.monotonic_ns()) / 1e9
            if wait > 0:
                time.sleep(wait)
    left = p.flush(60)
    secs = (time.monotonic_ns() - t0) / 1e9
    return {"records": n - left, "seconds": secs, "rate": a.rate, "errors": errors[0] + left}


def _pct(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    k = min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))
    return sorted_ns[k] / 1e6


def _e2e_consume(a: argparse.Namespace) -> dict[str, Any]:
    c = _assign(a)
    c.consume(num_messages=1, timeout=0.5)  # connect and start fetching before the producer runs
    print("READY", flush=True)
    lat: list[int] = []
    unpack, mono = struct.unpack_from, time.monotonic_ns
    idle_deadline = time.monotonic() + a.timeout
    poll = c.poll
    while len(lat) < a.count and time.monotonic() < idle_deadline:
        # poll(), not consume(n): consume() waits to fill its batch, which would add latency.
        m = poll(0.1)
        if m is None:
            continue
        now = mono()
        value = m.value()
        if m.error() is None and value is not None:
            lat.append(now - unpack("<q", value, 0)[0])
            idle_deadline = time.monotonic() + a.timeout
    c.close()
    errors = a.count - len(lat)
    lat = sorted(lat[a.skip :])  # the first records are warm-up: not measured
    return {
        "records": len(lat),
        "warmup_records": a.skip,
        "errors": errors,
        "p50_ms": _pct(lat, 0.50),
        "p99_ms": _pct(lat, 0.99),
        "p999_ms": _pct(lat, 0.999),
        "max_ms": lat[-1] / 1e6 if lat else float("nan"),
        "mean_ms": sum(lat) / len(lat) / 1e6 if lat else float("nan"),
    }


def _steady(a: argparse.Namespace) -> dict[str, Any]:
    """Fixed rate to partitions round-robin, acks from per-record delivery reports.

    Each record carries its intended send time (CLOCK_MONOTONIC ns) in its first 8 bytes; the
    delivery report gives ack latency = report time - intended time (no coordinated omission).
    ``--failover``: after ``--warmup-s`` prints ``FLOWING <leader of partition 0>``, reads the
    harness's kill time (ns) from stdin, and keeps producing until every partition has acked a
    record sent after the kill (plus ``--tail-s``), at most ``--seconds`` after the kill.
    """
    acks: list[tuple[int, int, int]] = []  # (partition, intended ns, ack ns)
    errors = [0]
    mono, unpack = time.monotonic_ns, struct.unpack_from
    kill: list[int] = []  # the harness's kill time, once known
    recovered: dict[int, int] = {}  # partition -> first ack of a record sent after the kill

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors[0] += 1
            return
        part, sent, now = msg.partition(), unpack("<q", msg.value(), 0)[0], mono()
        acks.append((part, sent, now))
        if kill and sent > kill[0] and part not in recovered:
            recovered[part] = now

    p = Producer(
        _client(
            a,
            {
                "bootstrap.servers": a.bootstrap,
                "acks": a.acks,
                "linger.ms": a.linger_ms,
                "batch.size": a.batch_size,
                "compression.type": a.compression,
                "queue.buffering.max.messages": 2_000_000,
                "queue.buffering.max.kbytes": 2_097_151,
                "socket.nagle.disable": True,
                # The Java producer's default (and the bound idempotent producers need). librdkafka's
                # default (1,000,000) seals a request every linger.ms however slow the acks are; a
                # broker that answers a connection's requests one at a time (Kafka: acks=all waits for
                # the followers' fetch before the next request of that connection is read) then lets
                # tiny requests queue without bound: kafka3 on one core reached p50 11-16 s at
                # 2,000 records/s, and 62 ms with 5 (bench/README.md, "fixed-rate ack latency").
                "max.in.flight.requests.per.connection": a.max_in_flight,
                "on_delivery": on_delivery,
            },
        )
    )
    parts = len(p.list_topics(a.topic, timeout=10).topics[a.topic].partitions)
    buf = _payload(a.size)
    interval = 1e9 / a.rate
    t0 = mono() + 50_000_000
    warm_end = t0 + int(a.warmup_s * 1e9)
    end = warm_end + int(a.seconds * 1e9)
    kill_ns: int | None = None
    leader = -1
    i, topic = 0, a.topic
    while True:
        now = mono()
        if now >= end:
            break
        due = int((now - t0) / interval) + 1 if now >= t0 else 0
        while i < due:
            struct.pack_into("<q", buf, 0, t0 + int(i * interval))
            try:
                p.produce(topic, bytes(buf), partition=i % parts)
            except BufferError:
                p.poll(0.001)
                continue
            i += 1
        p.poll(0)
        if a.failover and kill_ns is None and now >= warm_end:
            leader = _leader0(p, a.topic)
            print(f"FLOWING {leader}", flush=True)
            kill_ns = int(sys.stdin.readline())
            kill.append(kill_ns)
            end = kill_ns + int(a.seconds * 1e9)
        elif kill_ns is not None and len(recovered) == parts:
            end = min(end, max(now, kill_ns) + int(a.tail_s * 1e9))
        wait = (t0 + i * interval - mono()) / 1e9
        if wait > 0:
            time.sleep(min(wait, 0.01))
    left = p.flush(120)
    out: dict[str, Any] = {"records": len(acks), "sent": i, "rate": a.rate, "errors": errors[0] + left}
    out["seconds"] = (mono() - t0) / 1e9
    if kill_ns is None:
        lat = sorted(ack - sent for _part, sent, ack in acks if sent >= warm_end)
        out |= {
            "p50_ms": _pct(lat, 0.50),
            "p99_ms": _pct(lat, 0.99),
            "p999_ms": _pct(lat, 0.999),
            "max_ms": lat[-1] / 1e6 if lat else float("nan"),
            "mean_ms": sum(lat) / len(lat) / 1e6 if lat else float("nan"),
        }
        return out
    # Failover: per partition, kill -> first ack of a record sent after the kill (the dead leader
    # cannot have acked it).
    out["partition0_leader"] = leader
    out["kill_ns"] = kill_ns
    by_part = {q: (recovered[q] - kill_ns) / 1e6 if q in recovered else None for q in range(parts)}
    out["failover_ms_by_partition"] = by_part
    out["failover_s"] = by_part[0] / 1e3 if by_part[0] is not None else None
    done = [v for v in by_part.values() if v is not None]
    out["failover_max_s"] = max(done) / 1e3 if len(done) == parts else None
    out["in_flight_acked_after_kill"] = sum(1 for _q, sent, ack in acks if sent <= kill_ns < ack)
    before = [ack for q, _sent, ack in acks if q == 0 and ack <= kill_ns]
    out["last_ack_before_kill_ms"] = (kill_ns - before[-1]) / 1e6 if before else None
    return out


def _leader0(p: Producer, topic: str) -> int:
    """Partition 0's leader; an overloaded cluster may take a while to answer metadata."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return int(p.list_topics(topic, timeout=10).topics[topic].partitions[0].leader)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            p.poll(0.1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "mode", choices=["ready", "create", "produce", "consume", "e2e-produce", "e2e-consume", "steady", "leaders"]
    )
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", default="bench")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--replication", type=int, default=1, help="create: replication factor")
    ap.add_argument("--config", action="append", default=[], help="topic config k=v")
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--acks", default="1")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--linger-ms", type=float, default=5)
    ap.add_argument("--batch-size", type=int, default=1_048_576)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--skip", type=int, default=0, help="e2e-consume: warm-up records not measured")
    ap.add_argument("--min-brokers", type=int, default=1, help="ready: brokers the metadata must list")
    ap.add_argument("--seconds", type=float, default=10.0, help="steady: measured seconds (after the kill)")
    ap.add_argument("--warmup-s", type=float, default=1.0, help="steady: sent, not measured")
    ap.add_argument("--max-in-flight", type=int, default=5, help="steady: requests in flight per connection")
    ap.add_argument("--failover", action="store_true", help="steady: wait for the harness to kill a leader")
    ap.add_argument("--tail-s", type=float, default=1.0, help="steady --failover: run on after recovery")
    ap.add_argument(
        "-X", dest="extra", action="append", default=[], metavar="KEY=VALUE",
        help="librdkafka property for every client this run makes (e.g. security.protocol=SASL_SSL)",
    )  # fmt: skip
    a = ap.parse_args(argv)
    if a.mode == "ready":
        return _ready(a)
    if a.mode == "create":
        return _create(a)
    run = {
        "produce": _produce,
        "consume": _consume,
        "e2e-produce": _e2e_produce,
        "e2e-consume": _e2e_consume,
        "steady": _steady,
        "leaders": _leaders,
    }[a.mode]
    print(json.dumps(run(a)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
