"""Runs a profile: rounds of A/B/A/B broker sessions, each workload measured once per session.

Each round starts every system fresh in turn (wiped data directory, broker on the broker core),
warms it up, runs every workload on a fresh topic with the load generator on the other core, and
charges the broker's CPU seconds and RSS to the workload (``procstat``). Rates of fixed-rate
workloads are fixed once, from Kafka's first measured peak. Results go to ``report``.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import generators as gen
from harness import groups, java
from harness.procstat import Meter, rss_bytes
from harness.systems import SEGMENT_BYTES, System
from harness.workloads import ACK_WARMUP_RATE, Profile, Workload

Sample = dict[str, Any]
LATENCY_WARMUP_S = 1.0  # fixed-rate latency: the first second is sent but not measured
# Ack latency (RF=3, fresh clusters): the first seconds at the target rate are sent but not
# measured, on every system alike. Three fresh JVMs sharing one core still JIT-compile the
# acks=all path (produce purgatory, follower fetch) long after the RF=1 session warm-up: at
# 2,000 records/s their C1/C2 compiler threads took ~45-55 % of core 0 for the first ~75 s
# (cluster3 therefore also runs Profile.ack_warmup_s of load once per session).
ACK_LATENCY_WARMUP_S = 5.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Results:
    """Raw samples: workload name -> system name -> one dict per repeat."""

    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # workload -> system -> why it did not run (e.g. RF=3 on a single broker)
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, workload: str, system: str, sample: Sample) -> None:
        self.samples.setdefault(workload, {}).setdefault(system, []).append(sample)


def evict(data_dir: Path) -> None:
    """Write back and drop the page cache of every file under ``data_dir`` (cold reads)."""
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            try:
                fd = os.open(Path(root) / name, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            finally:
                os.close(fd)


def resident_bytes(data_dir: Path, topic: str) -> int | None:
    """Bytes of ``topic``'s ``.log`` files in the page cache (util-linux ``fincore``), or None."""
    if shutil.which("fincore") is None:
        return None
    files = [str(p) for p in data_dir.rglob("*.log") if topic in str(p)]
    if not files:
        return 0
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    return sum(int(x) for x in out.stdout.split() if x.isdigit())


class Session:
    """One running broker: topics made in it, fills already done, the generator core."""

    def __init__(self, system: System, gen_cpu: str | None, libs: Path | None, results: Results) -> None:
        self.sys = system
        self.cpu = gen_cpu
        self._libs = libs
        self.results = results
        self.filled: dict[tuple[int, int, int, int], str] = {}
        self.n = 0

    @property
    def libs(self) -> Path:
        assert self._libs is not None, "kafka-tools needed but not fetched"
        return self._libs

    def topic(self, w: Workload, prefix: str = "t") -> str:
        self.n += 1
        name = f"{prefix}{self.n}-{w.name}"[:200]
        config = {"segment.bytes": str(SEGMENT_BYTES)}
        if w.replication > 1:
            config["min.insync.replicas"] = str(w.replication - 1)
        gen.create_topic(self.sys.bootstrap, name, w.partitions, config, w.replication)
        return name

    def warmup(self, records: int) -> None:
        if records <= 0:
            return
        w = Workload("warmup", "produce", "rdkafka", 4, 1024, records)
        t = self.topic(w, "warm")
        gen.rdk_produce(self.cpu, self.sys.bootstrap, t, records, w.producer())
        gen.rdk_consume(self.cpu, self.sys.bootstrap, t, records)

    def ack_warmup(self, seconds: float, replication: int) -> None:
        """Unmeasured fixed-rate RF=3 acks=all load on a topic of its own (JIT warm-up of the
        acks=all path: produce purgatory, follower fetch), the same for every system."""
        if seconds <= 0:
            return
        w = Workload("ackwarm", "ack-latency", "rdkafka", 6, 1024, acks="all", replication=replication)
        t = self.topic(w, "warm")
        gen.rdk_steady(self.cpu, self.sys.bootstrap, t, ACK_WARMUP_RATE, seconds, w.producer(), 0.0)

    def rate(self, w: Workload) -> float:
        known = self.results.rates.get(w.name)
        if known:
            return float(known["rate"])
        by_sys = self.results.samples.get(w.rate_of, {})
        if w.rate_basis == "fixed":
            self.results.rates[w.name] = {"rate": w.rate_default, "source": "fixed by the profile"}
            return w.rate_default
        if w.rate_basis == "slowest":
            return self._slowest_rate(w, by_sys)
        peaks = [s["records_per_s"] for s in by_sys.get("kafka") or by_sys.get("kafka3", []) if "records_per_s" in s]
        if peaks:
            peak = float(statistics.median(peaks))
            rate = min(w.rate_cap, w.rate_fraction * peak)
            src = f"{w.rate_fraction:.0%} of Kafka's {w.rate_of} ({peak:.0f}/s)"
            if rate == w.rate_cap:
                src += f", capped at {w.rate_cap:.0f}/s"
        else:
            rate, src = w.rate_default, "profile default (no Kafka peak measured)"
        self.results.rates[w.name] = {"rate": round(rate, 1), "source": src}
        return rate

    def _slowest_rate(self, w: Workload, by_sys: dict[str, list[Sample]]) -> float:
        medians = {
            name: float(statistics.median(peaks))
            for name, samples in by_sys.items()
            if (peaks := [x["records_per_s"] for x in samples if "records_per_s" in x and not x.get("excluded")])
        }
        if medians:
            slow = min(medians, key=lambda n: medians[n])
            rate = min(w.rate_cap, w.rate_fraction * medians[slow])
            peaks_txt = ", ".join(f"{n} {v:.0f}/s" for n, v in medians.items())
            src = f"{w.rate_fraction:.0%} of the slowest median peak of {w.rate_of} ({peaks_txt})"
        else:
            rate, src = w.rate_default, "profile default (no peak measured)"
        self.results.rates[w.name] = {"rate": round(rate, 1), "source": src}
        return rate

    def run(self, w: Workload) -> Sample:
        s = self.sys
        extra: Sample = {}
        if w.kind in ("consume", "group-consume"):
            key = (w.partitions, w.size, w.records, w.replication)
            if key not in self.filled:
                t = self.topic(w, "fill")
                gen.rdk_produce(self.cpu, s.bootstrap, t, w.records, w.producer())
                self.filled[key] = t
            topic = self.filled[key]
            if w.cache == "cold":
                evict(s.data_dir())
            extra["resident_MB_before"] = _mb(resident_bytes(s.data_dir(), topic))
        else:
            topic = self.topic(w)
        ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        with Meter(s.pids) as m:
            if w.kind == "produce" and w.generator == "rdkafka":
                raw = gen.rdk_produce(self.cpu, s.bootstrap, topic, w.records, w.producer())
            elif w.kind == "produce":
                raw = gen.perf_produce(self.cpu, self.libs, s.bootstrap, topic, w.records, w.producer())
            elif w.kind == "consume" and w.generator == "rdkafka":
                raw = gen.rdk_consume(self.cpu, s.bootstrap, topic, w.records)
            elif w.kind == "consume":
                raw = gen.perf_consume(self.cpu, self.libs, s.bootstrap, topic, w.records)
            elif w.kind == "group-consume":
                raw = groups.group_consume(
                    self.cpu, s.bootstrap, topic, w.partitions, w.records, w.members, w.session_ms
                )
            elif w.kind == "failover":
                raw = groups.failover(
                    self.cpu, s.bootstrap, topic, w.partitions, w.members, w.session_ms, w.rate_default
                )
            elif w.kind == "ack-latency":
                rate = self.rate(w)
                raw = gen.rdk_steady(self.cpu, s.bootstrap, topic, rate, w.seconds, w.producer(), ACK_LATENCY_WARMUP_S)
                extra["rate"] = round(rate, 1)
            elif w.kind == "leader-failover":
                kill = getattr(s, "kill_node", None)
                if kill is None:
                    raise RuntimeError(f"{s.name} cannot kill a single broker")
                raw = gen.rdk_failover(self.cpu, s.bootstrap, topic, w.rate_default, w.producer(), kill)
            elif w.kind == "latency":
                rate = self.rate(w)
                count = max(1, int(rate * w.seconds))
                warm = int(rate * LATENCY_WARMUP_S)
                e2e = gen.c_e2e if w.generator == "latgen" else gen.rdk_e2e
                raw = e2e(self.cpu, s.bootstrap, topic, count, rate, w.producer(), warm)
                extra["rate"] = round(rate, 1)
            else:
                raw = gen.perf_pingpong(self.cpu, self.libs, s.bootstrap, topic, w.records, w.size, w.acks)
        ru1, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - t0
        gen_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        # The generator's CPU over the window (JVM start-up included): near 1.0 means the
        # generator core, not the broker, may be the bottleneck.
        extra["window_s"] = round(wall, 3)
        extra["generator_cpu_util"] = round(gen_cpu / wall, 3) if wall > 0 else None
        return _metrics(w, raw, m.result.cpu_s, m.result.rss_peak) | extra


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 1e6, 1)


def _metrics(w: Workload, raw: Sample, cpu_s: float, rss_peak: int) -> Sample:
    moved = raw.get("consumed", raw.get("records", 0))
    out: Sample = {"raw": raw, "broker_cpu_s": round(cpu_s, 3), "rss_peak_MB": _mb(rss_peak)}
    if w.kind == "leader-failover":
        moved = 0  # a trickle at a fixed rate: CPU per GB says nothing
        del out["broker_cpu_s"]  # and the killed broker's CPU leaves the sum mid-window
    if w.kind in ("produce", "consume", "group-consume") and raw.get("seconds"):
        out["records_per_s"] = raw["records"] / raw["seconds"]
        out["MB_per_s"] = raw["records"] * w.size / raw["seconds"] / 1e6
    keys = ("p50_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms", "join_s", "rebalance_s", "failover_s", "failover_max_s")
    for k in keys:
        if raw.get(k) is not None:
            out[k] = raw[k]
    if moved:
        out["cpu_s_per_GB"] = cpu_s / (moved * w.size / 1e9)
        out["cpu_s_per_Mrec"] = cpu_s / (moved / 1e6)
    errs = raw.get("errors", 0) + raw.get("produce_errors", 0)
    if errs:
        out["errors"] = errs
    return out


def run_profile(
    profile: Profile, systems: list[System], repeats: int, gen_cpu: str | None, results: Results
) -> Results:
    """A/B/A/B: for each repeat, each system in turn runs every workload of the profile."""
    # kafka-tools are load generators for every system: fetch them only if a workload uses them.
    libs = java.libs_dir() if any(w.generator == "kafka-perf" for w in profile.workloads) else None
    phases = sorted({w.phase for w in profile.workloads})
    for phase in phases:
        workloads = [w for w in profile.workloads if w.phase == phase]
        tag = f"phase {phase + 1}/{len(phases)}, " if len(phases) > 1 else ""
        _run_rounds(profile, workloads, systems, repeats, gen_cpu, results, libs, tag)
    return results


def _run_rounds(
    profile: Profile,
    workloads: list[Workload],
    systems: list[System],
    repeats: int,
    gen_cpu: str | None,
    results: Results,
    libs: Path | None,
    tag: str,
) -> None:
    for r in range(repeats):
        for system in systems:
            log(f"{tag}round {r + 1}/{repeats}: starting {system.name}")
            try:
                system.start()
            except Exception as e:
                results.errors.append(f"round {r + 1} {system.name} start: {e}")
                log(f"{system.name} failed to start: {e}")
                continue
            try:
                time.sleep(1.0)
                results.add(
                    "startup",
                    system.name,
                    {
                        "startup_s": round(system.startup_s, 3),
                        "idle_rss_MB": _mb(rss_bytes(system.pids)),
                    },
                )
                session = Session(system, gen_cpu, libs, results)
                session.warmup(profile.warmup_records)
                acks_all = [w for w in workloads if w.kind == "ack-latency" and w.replication <= system.replicas]
                if acks_all and profile.ack_warmup_s > 0:
                    log(f"  {system.name}: {profile.ack_warmup_s:g} s unmeasured acks=all warm-up")
                    session.ack_warmup(profile.ack_warmup_s, max(w.replication for w in acks_all))
                for w in workloads:
                    if w.replication > system.replicas:
                        results.skipped.setdefault(w.name, {})[system.name] = system.no_replication_note
                        continue
                    if system.proc is None or system.proc.poll() is not None:
                        raise RuntimeError(f"{system.name} died:\n{system.log_tail()}")
                    try:
                        sample = session.run(w)
                    except Exception as e:
                        msg = f"round {r + 1} {system.name} {w.name}: {e}"
                        results.errors.append(msg)
                        log(msg)
                        continue
                    if sample.get("errors"):
                        # Records lost or late (e.g. a stalled broker): keep the sample in the JSON,
                        # leave it out of the table, say so with the broker's last words.
                        sample["excluded"] = True
                        msg = (
                            f"round {r + 1} {system.name} {w.name}: {sample['errors']} records failed "
                            f"or missing (sample excluded); broker log tail:\n{system.log_tail(10)}"
                        )
                        results.errors.append(msg)
                        log(msg)
                    results.add(w.name, system.name, sample)
                    log(
                        f"  {system.name} {w.name}: "
                        + ", ".join(f"{k}={v:.4g}" for k, v in sample.items() if isinstance(v, float))
                    )
            except Exception as e:
                state = system.proc.poll() if system.proc else None
                died = f"broker exited with {state}" if state is not None else "broker still running"
                msg = f"round {r + 1} {system.name}: {e}\n{died}; broker log tail:\n{system.log_tail(20)}"
                results.errors.append(msg)
                log(traceback.format_exc())
                log(msg)
            finally:
                system.stop()
