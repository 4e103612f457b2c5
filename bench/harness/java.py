"""Apache Kafka's jars (fetched by ``bench/kafka/fetch.sh``) and the JVM command lines that use them.

Neighbours: ``systems.KafkaSystem`` starts the broker with :func:`broker_cmd`; ``generators`` runs
kafka-tools classes with :func:`tool_cmd`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

KAFKA_VERSION = "4.1.1"
BENCH_DIR = Path(__file__).resolve().parent.parent
FETCH_SH = BENCH_DIR / "kafka" / "fetch.sh"
LOG4J2 = BENCH_DIR / "kafka" / "log4j2.properties"

# Kafka's shipped defaults (bin/kafka-server-start.sh, kafka-run-class.sh), heap stated: 1 GiB.
BROKER_JVM = [
    "-Xms1G",
    "-Xmx1G",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
]
TOOL_JVM = ["-Xmx512M", "-XX:+UseG1GC", "-Djava.awt.headless=true"]


def cache_root() -> Path:
    """Where fetched jars and benchmark data live (outside the repository)."""
    env = os.environ.get("TIDELOG_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "tidelog-bench"


def libs_dir() -> Path:
    """Run ``fetch.sh`` (a no-op when cached) and return the directory of Kafka's jars."""
    env = dict(os.environ, KAFKA_VERSION=KAFKA_VERSION, TIDELOG_BENCH_CACHE=str(cache_root()))
    out = subprocess.run(["bash", str(FETCH_SH)], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench/kafka/fetch.sh failed ({out.returncode}):\n{out.stderr}")
    return Path(out.stdout.strip().splitlines()[-1])


def java_cmd(libs: Path, jvm: list[str], main: str, *args: str) -> list[str]:
    """``java`` with the Kafka classpath, our log4j2 config, and ``main`` with ``args``."""
    return [
        "java",
        *jvm,
        f"-Dlog4j2.configurationFile={LOG4J2}",
        "-cp",
        f"{libs}/*",
        main,
        *args,
    ]


def broker_cmd(libs: Path, properties: Path) -> list[str]:
    """Command line of a KRaft broker+controller (``kafka.Kafka``)."""
    return java_cmd(libs, BROKER_JVM, "kafka.Kafka", str(properties))


def tool_cmd(libs: Path, main: str, *args: str) -> list[str]:
    """Command line of a kafka-tools class, e.g. ``org.apache.kafka.tools.ProducerPerformance``."""
    return java_cmd(libs, TOOL_JVM, main, *args)
