"""The workload matrix (after the OpenMessaging Benchmark's shapes, scaled to 2 cores) and profiles.

A :class:`Workload` is one measured step against a running broker: ``produce`` (flat out),
``consume`` (from a pre-filled topic, page cache ``warm`` or ``cold``), ``latency`` (fixed rate, a
fraction of Kafka's measured peak of a reference produce workload) or ``pingpong`` (Kafka's
EndToEndLatency, one record in flight). ``runner`` executes them in order; profiles pick which.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

KIB = 1024


@dataclass(frozen=True)
class Workload:
    """One measured step; ``name`` is stable and keys the report."""

    name: str
    kind: str  # produce | consume | latency | pingpong | group-consume | failover | ack-latency | leader-failover
    generator: str  # rdkafka | kafka-perf
    partitions: int = 1
    size: int = KIB
    records: int = 100_000
    acks: str = "1"
    compression: str = "none"
    linger_ms: float = 5
    batch_size: int = 1_048_576
    cache: str = "warm"  # consume only
    rate_of: str = ""  # latency only: produce workload whose Kafka peak sets the rate
    rate_fraction: float = 0.5
    rate_default: float = 5000.0  # records/s when no Kafka peak is known
    # Upper bound on the fixed rate: shared/notes/performance.md's latency target is 50 k x 1 KB/s,
    # and above ~100 k/s the Python e2e consumer saturates the generator core it shares with
    # the producer, so the figure would measure the generator.
    rate_cap: float = 50_000.0
    seconds: float = 10.0  # latency only: duration at the fixed rate
    extra: dict[str, Any] = field(default_factory=dict)
    replication: int = 1  # >1: topics with min.insync.replicas=replication-1 (three-broker systems)
    members: int = 3  # group workloads: consumer processes in the group
    session_ms: int = 6000  # group workloads: session.timeout.ms (both brokers: initial delay 0)
    # Fixed rates: "kafka" = a fraction of Kafka's peak; "slowest" = of the slowest system's peak
    # (needs every system's peak first: put the peak workload in an earlier phase); "fixed" =
    # rate_default records/s.
    rate_basis: str = "kafka"
    # Phases run in order, each as complete A/B rounds of fresh broker sessions (a workload that
    # kills a broker ends its phase; a rate from every system's peak needs the peaks first).
    phase: int = 0

    def producer(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "acks": self.acks,
            "compression": self.compression,
            "linger_ms": self.linger_ms,
            "batch_size": self.batch_size,
        }

    def describe(self) -> str:
        size = f"{self.size // KIB} KiB" if self.size >= KIB else f"{self.size} B"
        base = f"{self.kind} {size} x{self.partitions}p via {self.generator}"
        if self.replication > 1:
            base += f", RF={self.replication} min.insync.replicas={self.replication - 1}"
        if self.kind == "group-consume":
            return (
                f"{base}, {self.members}-member group formed first (partitions paused), then read from "
                f"earliest; session {self.session_ms} ms"
            )
        if self.kind == "failover":
            return (
                f"{base}, {self.members}-member group, SIGKILL one while {self.rate_default:g} records/s flow; "
                f"session.timeout.ms={self.session_ms}, group.initial.rebalance.delay.ms=0"
            )
        if self.kind == "produce":
            return f"{base}, acks={self.acks}, {self.compression}, linger {self.linger_ms:g} ms"
        if self.kind == "ack-latency":
            rate = (
                f"{self.rate_default:g} records/s"
                if self.rate_basis == "fixed"
                else f"{self.rate_fraction:.0%} of the slowest system's peak of {self.rate_of}"
            )
            return (
                f"{base}, acks={self.acks}, fixed rate {rate}, {self.seconds:g} s (+5 s warm-up), "
                f"linger {self.linger_ms:g} ms, max 5 requests in flight per connection, "
                f"batch {self.batch_size // KIB} KiB; latency = delivery report - intended send time"
            )
        if self.kind == "leader-failover":
            return (
                f"{base}, acks={self.acks}, {self.rate_default:g} records/s round-robin, linger "
                f"{self.linger_ms:g} ms; SIGKILL the leader of partition 0; failover_s = kill -> first ack "
                "of a partition-0 record sent after the kill; failover_max_s = the same, slowest partition"
            )
        if self.kind == "consume":
            return f"{base}, {self.cache} page cache"
        if self.kind == "latency":
            cap = f" capped at {self.rate_cap:.0f}/s" if self.rate_cap != float("inf") else ""
            return (
                f"{base}, fixed rate {self.rate_fraction:.0%} of Kafka peak of "
                f"{self.rate_of or 'n/a'}{cap}, {self.seconds:g} s "
                f"(+1 s warm-up), linger {self.linger_ms:g} ms"
            )
        return f"{base}, one record in flight, acks={self.acks}"


def _size_tag(size: int) -> str:
    return "1k" if size == KIB else f"{size}b"


def produce(gen: str, partitions: int, size: int, records: int, acks: str = "1", compression: str = "none") -> Workload:
    tag = "rdk" if gen == "rdkafka" else "perf"
    name = f"produce-{_size_tag(size)}-{partitions}p-acks{acks}-{compression}-{tag}"
    return Workload(name, "produce", gen, partitions, size, records, acks, compression)


def consume(gen: str, partitions: int, size: int, records: int, cache: str) -> Workload:
    tag = "rdk" if gen == "rdkafka" else "perf"
    name = f"consume-{_size_tag(size)}-{partitions}p-{cache}-{tag}"
    return Workload(name, "consume", gen, partitions, size, records, cache=cache)


def latency(
    partitions: int, size: int, rate_of: str, seconds: float, rate_default: float = 5000.0, generator: str = "rdkafka"
) -> Workload:
    """Fixed-rate end-to-end latency. ``generator="latgen"``: the C generator (bench/latgen), which
    drives half of Kafka's peak from one core, so its rate is not capped."""
    name = f"latency-{_size_tag(size)}-{partitions}p-fixed50" + ("-c" if generator == "latgen" else "")
    return Workload(
        name,
        "latency",
        generator,
        partitions,
        size,
        acks="1",
        linger_ms=1,
        batch_size=131072,
        rate_of=rate_of,
        seconds=seconds,
        rate_default=rate_default,
        rate_cap=float("inf") if generator == "latgen" else 50_000.0,
    )


def group_consume(partitions: int, records: int, members: int = 3) -> Workload:
    name = f"group-consume-1k-{partitions}p-{members}m"
    return Workload(name, "group-consume", "rdkafka", partitions, KIB, records, members=members)


def failover(partitions: int, members: int = 3, session_ms: int = 6000, rate: float = 1000.0) -> Workload:
    name = f"group-failover-{partitions}p-{members}m-s{session_ms}"
    return Workload(
        name, "failover", "rdkafka", partitions, KIB, 0, members=members, session_ms=session_ms, rate_default=rate
    )


def replicated(w: Workload, rf: int = 3) -> Workload:
    """``w`` on topics with replication factor ``rf`` and acks=all (three-broker systems only)."""
    return replace(w, name=f"{w.name.replace('-acks1-', '-acksall-')}-rf{rf}", replication=rf, acks="all")


def pingpong(size: int, records: int) -> Workload:
    return Workload(f"pingpong-{_size_tag(size)}-1p", "pingpong", "kafka-perf", 1, size, records, acks="1")


def _quick() -> list[Workload]:
    p1k = produce("kafka-perf", 1, KIB, 100_000)
    return [
        produce("rdkafka", 1, 100, 300_000),
        p1k,
        consume("rdkafka", 1, KIB, 100_000, "warm"),
        latency(1, KIB, p1k.name, seconds=3),
    ]


def _default() -> list[Workload]:
    p1k1 = produce("rdkafka", 1, KIB, 1_000_000)
    return [
        produce("rdkafka", 1, 100, 3_000_000),
        p1k1,
        produce("rdkafka", 16, KIB, 1_000_000),
        produce("kafka-perf", 16, KIB, 1_000_000, acks="all", compression="lz4"),
        consume("rdkafka", 16, KIB, 1_000_000, "warm"),
        consume("kafka-perf", 16, KIB, 1_000_000, "warm"),
        consume("rdkafka", 16, KIB, 1_000_000, "cold"),
        latency(1, KIB, p1k1.name, seconds=15),
        latency(1, KIB, p1k1.name, seconds=10, generator="latgen"),
        pingpong(KIB, 2000),
        *_groups(1_000_000),
    ]


def _full() -> list[Workload]:
    out: list[Workload] = []
    records = {100: 3_000_000, KIB: 1_000_000}
    for parts, size, acks, comp, gen in itertools.product(
        (1, 16), (100, KIB), ("1", "all"), ("none", "lz4"), ("rdkafka", "kafka-perf")
    ):
        out.append(produce(gen, parts, size, records[size], acks, comp))
    for parts, size, cache, gen in itertools.product((1, 16), (100, KIB), ("warm", "cold"), ("rdkafka", "kafka-perf")):
        out.append(consume(gen, parts, size, records[size], cache))
    for parts, size in itertools.product((1, 16), (100, KIB)):
        ref = produce("rdkafka", parts, size, records[size]).name
        out.append(latency(parts, size, ref, seconds=20))
    out += [pingpong(100, 5000), pingpong(KIB, 5000)]
    return out + _groups(1_000_000) + _cluster()


def _groups(records: int) -> list[Workload]:
    """Issue 4: a 3-member group's consume throughput and its failover time."""
    return [group_consume(16, records), group_consume(6, records), failover(6)]


def _cluster() -> list[Workload]:
    """RF=3, acks=all, min.insync.replicas=2: only systems with three brokers run these."""
    p1k1 = produce("rdkafka", 1, KIB, 1_000_000)
    return [
        replicated(p1k1),
        replicated(produce("rdkafka", 16, KIB, 1_000_000)),
        replicated(produce("kafka-perf", 16, KIB, 1_000_000, compression="lz4")),
        replicated(consume("rdkafka", 16, KIB, 1_000_000, "warm")),
        replicated(latency(1, KIB, replicated(p1k1).name, seconds=15)),
        # 50 % of the peak (measured with 1 MiB batches) overloads three JVMs on one core with the
        # latency workload's 128 KiB / 1 ms batches; 15 % shows the unloaded cluster's latency.
        replace(
            replicated(latency(1, KIB, replicated(p1k1).name, seconds=15)),
            name="latency-1k-1p-fixed15-rf3",
            rate_fraction=0.15,
        ),
    ]


def _cluster3() -> list[Workload]:
    """Tidelog x3 vs Kafka x3 (issue: replicated cluster): RF=3, acks=all, min.insync.replicas=2.

    Phase 0: peak produce throughput. Phase 1 (fresh clusters): ack latency at fixed rates from the
    slower system's peak, then leader failover (kills a broker, so it ends the phase).
    """
    peak = replicated(produce("rdkafka", 6, KIB, 600_000))
    lat = Workload(
        "ack-latency-1k-6p-fixed50-rf3",
        "ack-latency",
        "rdkafka",
        6,
        KIB,
        acks="all",
        # The peak's producer settings (linger 5 ms, 1 MiB batches): with 1 ms / 128 KiB (OMB's
        # latency driver) the request rate, not the record rate, saturated core 0 and kafka3 could
        # not sustain even 25 % of its peak (p50 12-17 s in run 20261125T164857Z).
        linger_ms=5,
        batch_size=1_048_576,
        rate_of=peak.name,
        rate_fraction=0.5,
        rate_cap=float("inf"),
        rate_basis="slowest",
        seconds=10,
        replication=3,
        phase=1,
    )
    fail = Workload(
        "leader-failover-1k-6p-rf3",
        "leader-failover",
        "rdkafka",
        6,
        KIB,
        acks="all",
        linger_ms=5,
        batch_size=1_048_576,
        rate_default=1000.0,
        replication=3,
        phase=1,
    )
    # A low absolute rate as well: pinned to one core, kafka3 did not sustain 25 % of its peak.
    low = replace(lat, name="ack-latency-1k-6p-2k-rf3", rate_basis="fixed", rate_default=2000.0)
    return [peak, lat, replace(lat, name="ack-latency-1k-6p-fixed25-rf3", rate_fraction=0.25), low, fail]


def _smoke3() -> list[Workload]:
    """About 20 seconds on a three-broker system: RF=3 produce, ack latency, one leader failover."""
    peak, lat, _lat25, _low, fail = _cluster3()
    return [
        replace(peak, records=20_000),
        replace(lat, rate_default=2000.0, rate_of="", seconds=2),
        replace(fail, rate_default=500.0),
    ]


def _smoke() -> list[Workload]:
    """About five seconds of load: enough to prove that every number comes out."""
    return [
        produce("rdkafka", 1, KIB, 50_000),
        consume("rdkafka", 1, KIB, 50_000, "warm"),
        latency(1, KIB, "", seconds=2, rate_default=2000),
    ]


@dataclass(frozen=True)
class Profile:
    """Workloads, repeats and the sizes of the physical-limit probes."""

    name: str
    workloads: list[Workload]
    repeats: int
    limits: str  # quick | default | full | none
    warmup_records: int
    # (workload, metric, "<=" or ">=", bound on Tidelog/Kafka): printed as a pass/miss table
    targets: tuple[tuple[str, str, str, float], ...] = ()
    # Sessions that run ack-latency workloads first send this many seconds of unmeasured RF=3
    # acks=all load at ACK_WARMUP_RATE (runner.Session.ack_warmup), on every system alike.
    ack_warmup_s: float = 0.0


# Three fresh JVMs on one core needed ~75 s of 2,000 records/s RF=3 acks=all load before their
# compiler threads went quiet (C1/C2 ~50 % of the core until then, p50 330 ms -> 6 ms).
ACK_WARMUP_RATE = 2000.0


CLUSTER3_TARGETS = (
    ("produce-1k-6p-acksall-none-rdk-rf3", "records_per_s", ">=", 0.7),
    ("ack-latency-1k-6p-fixed50-rf3", "p99_ms", "<=", 2.0),
    ("leader-failover-1k-6p-rf3", "failover_s", "<=", 1.0),
)
PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", _smoke(), 1, "none", 10_000),
    "quick": Profile("quick", _quick(), 3, "quick", 50_000),
    "default": Profile("default", _default(), 3, "default", 300_000),
    "full": Profile("full", _full(), 3, "full", 300_000),
    "groups": Profile("groups", _groups(1_000_000), 3, "none", 50_000),
    "cluster": Profile("cluster", _cluster(), 3, "none", 300_000),
    "cluster3": Profile("cluster3", _cluster3(), 3, "none", 100_000, CLUSTER3_TARGETS, ack_warmup_s=120.0),
    "smoke3": Profile("smoke3", _smoke3(), 1, "none", 0, CLUSTER3_TARGETS),
}
