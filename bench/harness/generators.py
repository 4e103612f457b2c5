"""Load generators that are not ours, run pinned on the generator core, returning raw figures.

Two families: kafka-tools (``ProducerPerformance``, ``ConsumerPerformance``, ``EndToEndLatency``,
JVMs started from ``java``'s jars) and librdkafka (``rdkgen.py`` under this interpreter). Every
function returns a dict with at least ``records`` and ``seconds`` (throughput) or latency
percentiles in ms; ``runner`` turns them into metrics. Output formats are those of Kafka 4.1.1.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import java

RDKGEN = Path(__file__).with_name("rdkgen.py")
TOOLS = "org.apache.kafka.tools."


class GeneratorError(RuntimeError):
    """A load generator failed or printed something we cannot parse."""


def python() -> str:
    """The interpreter that has confluent-kafka (``$TIDELOG_BENCH_PYTHON`` or this one)."""
    return os.environ.get("TIDELOG_BENCH_PYTHON", sys.executable)


def rdkgen_cmd(mode: str, *args: str) -> list[str]:
    return [python(), str(RDKGEN), mode, *args]


def _pinned(cpu: str | None, cmd: list[str]) -> list[str]:
    return (["taskset", "-c", cpu] if cpu else []) + cmd


def _run(cmd: list[str], timeout: float) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise GeneratorError(f"timed out after {timeout:.0f}s: {' '.join(cmd[-12:])}") from e
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise GeneratorError(f"exit {out.returncode}: {' '.join(cmd[-12:])}\n{tail}")
    return out.stdout


def _json(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise GeneratorError(f"no JSON in output:\n{stdout[-2000:]}")


def create_topic(bootstrap: str, topic: str, partitions: int, config: dict[str, str], replication: int = 1) -> None:
    args = ["--bootstrap", bootstrap, "--topic", topic, "--partitions", str(partitions)]
    args += ["--replication", str(replication)]
    for k, v in config.items():
        args += ["--config", f"{k}={v}"]
    _run(rdkgen_cmd("create", *args), timeout=120)


def leaders(bootstrap: str, topic: str) -> dict[int, dict[str, Any]]:
    """Partition -> {"leader": node id, "replicas": [node ids]}."""
    raw = _json(_run(rdkgen_cmd("leaders", "--bootstrap", bootstrap, "--topic", topic), timeout=60))
    return {int(q): v for q, v in raw.items()}


def _producer_args(p: dict[str, Any]) -> list[str]:
    return [
        "--size",
        str(p["size"]),
        "--acks",
        str(p["acks"]),
        "--compression",
        p["compression"],
        "--linger-ms",
        str(p["linger_ms"]),
        "--batch-size",
        str(p["batch_size"]),
    ]


def rdk_produce(cpu: str | None, bootstrap: str, topic: str, count: int, p: dict[str, Any]) -> dict[str, Any]:
    cmd = rdkgen_cmd("produce", "--bootstrap", bootstrap, "--topic", topic, "--count", str(count), *_producer_args(p))
    return _json(_run(_pinned(cpu, cmd), timeout=600))


def rdk_consume(cpu: str | None, bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    cmd = rdkgen_cmd("consume", "--bootstrap", bootstrap, "--topic", topic, "--count", str(count))
    return _json(_run(_pinned(cpu, cmd), timeout=600))


def rdk_e2e(
    cpu: str | None, bootstrap: str, topic: str, count: int, rate: float, p: dict[str, Any], warmup: int = 0
) -> dict[str, Any]:
    """Fixed-rate end-to-end latency: a consumer process, then a producer process at ``rate``.

    ``warmup`` more records are sent first at the same rate and left out of the percentiles.
    """
    common = ["--bootstrap", bootstrap, "--topic", topic, "--count", str(count + warmup)]
    cons_cmd = _pinned(cpu, rdkgen_cmd("e2e-consume", *common, "--skip", str(warmup)))
    cons = subprocess.Popen(cons_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert cons.stdout is not None
        assert cons.stderr is not None
        line = cons.stdout.readline()
        if line.strip() != "READY":
            raise GeneratorError(f"e2e consumer did not start: {line}{cons.stderr.read()}")
        prod = _json(
            _run(
                _pinned(cpu, rdkgen_cmd("e2e-produce", *common, "--rate", str(rate), *_producer_args(p))),
                timeout=count / rate + 120,
            )
        )
        out, err = cons.communicate(timeout=60)
    finally:
        if cons.poll() is None:
            cons.kill()
            cons.wait()
    if cons.returncode != 0:
        raise GeneratorError(f"e2e consumer exit {cons.returncode}: {err[-2000:]}")
    res = _json(out)
    res["seconds"] = prod["seconds"]
    res["produce_errors"] = prod["errors"]
    return res


def rdk_steady(
    cpu: str | None, bootstrap: str, topic: str, rate: float, seconds: float, p: dict[str, Any], warmup_s: float = 1.0
) -> dict[str, Any]:
    """Fixed-rate produce, ack latency (delivery report - intended send time) over ``seconds``."""
    cmd = rdkgen_cmd(
        "steady", "--bootstrap", bootstrap, "--topic", topic, "--rate", str(rate), "--seconds", str(seconds)
    )
    cmd += ["--warmup-s", str(warmup_s), *_producer_args(p)]
    return _json(_run(_pinned(cpu, cmd), timeout=seconds + warmup_s + 180))


def rdk_failover(
    cpu: str | None,
    bootstrap: str,
    topic: str,
    rate: float,
    p: dict[str, Any],
    kill_node: Callable[[int], None],
    warmup_s: float = 3.0,
    max_s: float = 60.0,
) -> dict[str, Any]:
    """A steady producer; once it flows, ``kill_node(leader of partition 0)``; time until acks resume.

    The kill time is CLOCK_MONOTONIC (system-wide) taken just before the SIGKILL and handed to the
    producer, which reports per partition the first ack of a record sent after it.
    """
    cmd = rdkgen_cmd("steady", "--bootstrap", bootstrap, "--topic", topic, "--rate", str(rate), "--failover")
    cmd += ["--seconds", str(max_s), "--warmup-s", str(warmup_s), *_producer_args(p)]
    proc = subprocess.Popen(
        _pinned(cpu, cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("FLOWING "):
            raise GeneratorError(f"failover producer did not start: {line}{proc.communicate(timeout=10)[1][-2000:]}")
        leader = int(line.split()[1])
        if leader < 1:
            raise GeneratorError(f"failover producer: partition 0 has no leader ({line.strip()})")
        kill_ns = time.monotonic_ns()
        kill_node(leader)
        proc.stdin.write(f"{kill_ns}\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=max_s + 180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise GeneratorError(f"failover producer exit {proc.returncode}: {err[-2000:]}")
    res = _json(out)
    res["killed_node"] = leader
    if res.get("failover_s") is None:
        res["errors"] = res.get("errors", 0) + 1  # partition 0 never recovered within max_s
    return res


LATGEN_SRC = Path(__file__).resolve().parents[1] / "latgen" / "latgen.c"


def latgen_binary() -> Path:
    """The C latency generator, compiled once per source version into the bench cache (needs gcc and
    Debian's librdkafka-dev: ``apt-get install gcc librdkafka-dev``)."""
    digest = hashlib.sha256(LATGEN_SRC.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("TIDELOG_BENCH_CACHE", Path.home() / ".cache" / "tidelog-bench")) / "latgen"
    binary = cache / f"latgen-{digest}"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        build = subprocess.run(
            ["gcc", "-O2", "-Wall", "-o", str(binary), str(LATGEN_SRC), "-lrdkafka", "-lpthread"],
            capture_output=True,
            text=True,
            check=False,
        )
        if build.returncode != 0:
            raise GeneratorError(
                f"cannot build bench/latgen (apt-get install gcc librdkafka-dev): {build.stderr.strip()[-500:]}"
            )
    return binary


def c_e2e(
    cpu: str | None, bootstrap: str, topic: str, count: int, rate: float, p: dict[str, Any], warmup: int = 0
) -> dict[str, Any]:
    """Fixed-rate end-to-end latency from the C generator: producer and consumer in one process."""
    cmd = [
        str(latgen_binary()),
        bootstrap,
        topic,
        str(count + warmup),
        str(rate),
        str(p["size"]),
        str(warmup),
        str(p["linger_ms"]),
        str(p["batch_size"]),
        str(p["acks"]),
    ]
    return _json(_run(_pinned(cpu, cmd), timeout=(count + warmup) / rate + 120))


_PP = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th"
)


def perf_produce(
    cpu: str | None, libs: Path, bootstrap: str, topic: str, count: int, p: dict[str, Any]
) -> dict[str, Any]:
    props = [
        f"bootstrap.servers={bootstrap}",
        f"acks={p['acks']}",
        f"linger.ms={int(p['linger_ms'])}",
        f"batch.size={p['batch_size']}",
        f"compression.type={p['compression']}",
        # buffer.memory stays at its 32 MiB default: 256 MiB ran the tool's 512 MiB heap out of
        # memory with lz4 and 1 MiB batches (OutOfMemoryError in BufferPool.allocateByteBuffer).
        "max.request.size=2097152",
    ]
    cmd = java.tool_cmd(
        libs,
        TOOLS + "ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(count),
        "--record-size",
        str(p["size"]),
        "--throughput",
        "-1",
        "--producer-props",
        *props,
    )
    out = _run(_pinned(cpu, cmd), timeout=600)
    found = _PP.findall(out)
    if not found:
        raise GeneratorError(f"ProducerPerformance: no summary line in:\n{out[-2000:]}")
    n, rps = int(found[-1][0]), float(found[-1][1])
    return {
        "records": n,
        "seconds": n / rps if rps else float("nan"),
        "ack_p50_ms": float(found[-1][5]),
        "ack_p99_ms": float(found[-1][7]),
    }


def perf_consume(cpu: str | None, libs: Path, bootstrap: str, topic: str, count: int) -> dict[str, Any]:
    cmd = java.tool_cmd(
        libs,
        TOOLS + "ConsumerPerformance",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--messages",
        str(count),
        "--timeout",
        "20000",
        "--group",
        f"perf-{time.monotonic_ns()}",
    )
    out = _run(_pinned(cpu, cmd), timeout=600)
    rows = [ln for ln in out.splitlines() if ln.count(",") >= 9 and ln[:1].isdigit()]
    if not rows:
        raise GeneratorError(f"ConsumerPerformance: no result row in:\n{out[-2000:]}")
    f = [x.strip() for x in rows[-1].split(",")]
    # start, end, MB, MB.sec, nMsg, nMsg.sec, rebalance.ms, fetch.time.ms, fetch.MB.sec, ...
    n, fetch_ms = int(f[4]), float(f[7])
    return {"records": n, "seconds": fetch_ms / 1000, "rebalance_ms": float(f[6]), "errors": max(0, count - n)}


_E2E_AVG = re.compile(r"Avg latency: ([\d.]+) ms")
_E2E_PCT = re.compile(r"Percentiles: 50th = (\d+), 99th = (\d+), 99\.9th = (\d+)")


def perf_pingpong(
    cpu: str | None, libs: Path, bootstrap: str, topic: str, count: int, size: int, acks: str
) -> dict[str, Any]:
    """Kafka's EndToEndLatency: one record at a time, send then wait to consume it (ms ints)."""
    cmd = java.tool_cmd(libs, TOOLS + "EndToEndLatency", bootstrap, topic, str(count), acks, str(size))
    out = _run(_pinned(cpu, cmd), timeout=600)
    avg, pct = _E2E_AVG.search(out), _E2E_PCT.search(out)
    if not avg or not pct:
        raise GeneratorError(f"EndToEndLatency: no summary in:\n{out[-2000:]}")
    return {
        "records": count,
        "mean_ms": float(avg.group(1)),
        "p50_ms": float(pct.group(1)),
        "p99_ms": float(pct.group(2)),
        "p999_ms": float(pct.group(3)),
    }
