"""Smoke test of the benchmark harness: a ~5-second workload must yield every number.

Not a timed test: it asserts that throughput, latency, CPU and RSS figures came out, never what they
are. The target is ``--bench-system`` (default ``tidelog``; ``kafka`` also needs Java 17 and Maven,
whose first run fetches Kafka's jars). Needs confluent-kafka and util-linux ``taskset``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from harness.report import write
from harness.runner import Results, run_profile
from harness.systems import SYSTEMS
from harness.workloads import PROFILES

pytestmark = [pytest.mark.bench, pytest.mark.timeout(600)]


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def test_smoke_workload_produces_numbers(bench_system: str, tmp_path: Path) -> None:
    profile = PROFILES["smoke"]
    system = SYSTEMS[bench_system](tmp_path / "data", "0")
    system.check()  # fails loudly (SystemUnavailableError) if the system cannot run here
    results = run_profile(profile, [system], repeats=1, gen_cpu="1", results=Results())
    assert results.errors == []
    startup = results.samples["startup"][bench_system][0]
    assert startup["startup_s"] > 0
    assert startup["idle_rss_MB"] > 0
    for w in profile.workloads:
        (sample,) = results.samples[w.name][bench_system]
        keys = ["broker_cpu_s", "rss_peak_MB", "cpu_s_per_GB", "cpu_s_per_Mrec"]
        keys += ["p50_ms", "p99_ms", "p999_ms"] if w.kind == "latency" else ["records_per_s", "MB_per_s"]
        for k in keys:
            assert _finite(sample.get(k)), f"{w.name}: {k} = {sample.get(k)!r}"
        assert sample["rss_peak_MB"] > 0
        assert "errors" not in sample
    js, md = write(tmp_path / "out", "smoke", profile, results, {}, _meta(bench_system))
    doc = json.loads(js.read_text())
    assert {r["workload"] for r in doc["rows"]} >= {w.name for w in profile.workloads}
    assert "| workload | metric |" in md.read_text()


def test_smoke_three_brokers(bench_system: str, tmp_path: Path) -> None:
    """The three-broker system (tidelog3, or kafka3 with ``--bench-system kafka``): RF=3 produce,
    ack latency and a leader failover yield their numbers (~25 s for tidelog3)."""
    name = f"{bench_system}3"
    profile = PROFILES["smoke3"]
    system = SYSTEMS[name](tmp_path / "data", "0")
    system.check()
    results = run_profile(profile, [system], repeats=1, gen_cpu="1", results=Results())
    assert results.errors == []
    produce, latency, failover = profile.workloads
    (s,) = results.samples[produce.name][name]
    assert _finite(s.get("records_per_s"))
    (s,) = results.samples[latency.name][name]
    assert _finite(s.get("p99_ms"))
    (s,) = results.samples[failover.name][name]
    assert _finite(s.get("failover_s"))
    assert s["failover_s"] > 0
    assert "errors" not in s
    _js, md = write(tmp_path / "out", "smoke3", profile, results, {}, _meta(name))
    assert "Targets (Tidelog/Kafka, medians)" in md.read_text()


def _meta(system: str) -> dict[str, object]:
    from harness.machine import describe  # noqa: PLC0415 - only this helper needs it

    return {
        "started": "smoke",
        "command": "pytest bench/test_smoke.py",
        "machine": describe(),
        "systems": [system],
        "repeats": 1,
        "broker_cpu": "0",
        "generator_cpu": "1",
    }
