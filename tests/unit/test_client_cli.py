"""``tidelog topics|produce|consume`` end to end: the installed command as a subprocess, a real broker."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from realkafka import RunningBroker, broker, target_broker  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(180)

TIDELOG = Path(sys.executable).parent / "tidelog"


def tidelog(b: RunningBroker, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    assert TIDELOG.exists(), f"{TIDELOG} is missing: install the project (pip install -e .)"
    return subprocess.run(
        [str(TIDELOG), *args, "--bootstrap", b.bootstrap],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def failed(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got:\n{result.stderr}"
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_topics_lifecycle(broker: RunningBroker) -> None:  # noqa: F811
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    assert "created topic" in ok(
        tidelog(broker, "topics", "create", topic, "--partitions", "3", "--config", "retention.ms=600000")
    )
    assert topic in ok(tidelog(broker, "topics", "list")).split()
    failed(tidelog(broker, "topics", "create", topic, "--partitions", "3"), "TOPIC_ALREADY_EXISTS")
    described = ok(tidelog(broker, "topics", "describe", topic))
    assert "PartitionCount: 3" in described
    assert "retention.ms=600000" in described
    assert described.count("\tPartition: ") == 3
    ok(
        tidelog(
            broker,
            "topics",
            "alter",
            topic,
            "--partitions",
            "5",
            "--config",
            "cleanup.policy=compact",
            "--delete-config",
            "retention.ms",
        )
    )
    described = ok(tidelog(broker, "topics", "describe", topic))
    assert "PartitionCount: 5" in described
    assert "cleanup.policy=compact" in described
    assert "retention.ms" not in described
    failed(tidelog(broker, "topics", "alter", topic, "--partitions", "2"), "INVALID_PARTITIONS")
    failed(tidelog(broker, "topics", "alter", topic), "nothing to alter")
    ok(tidelog(broker, "topics", "delete", topic))
    assert topic not in ok(tidelog(broker, "topics", "list")).split()
    failed(tidelog(broker, "topics", "delete", topic), "UNKNOWN_TOPIC_OR_PARTITION")
    failed(tidelog(broker, "topics", "describe", topic), "UNKNOWN_TOPIC_OR_PARTITION")


def test_produce_then_consume(broker: RunningBroker) -> None:  # noqa: F811
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    ok(tidelog(broker, "topics", "create", topic, "--partitions", "2"))
    lines = [f"line {i}" for i in range(25)]
    produced = tidelog(
        broker, "produce", topic, "--key", "k1", "--compression", "zstd", "--acks", "1", stdin="\n".join(lines) + "\n"
    )
    ok(produced)
    assert "produced 25 record(s)" in produced.stderr
    out = ok(tidelog(broker, "consume", topic, "--from-beginning", "--max-messages", "25", "--timeout-ms", "10000"))
    assert out.splitlines() == lines  # one key: one partition, in order
    keyed = ok(
        tidelog(broker, "consume", topic, "--from-beginning", "--max-messages", "2", "--print-key", "--print-offset")
    )
    partition = keyed.split(":", 1)[0]
    assert keyed.splitlines() == [f"{partition}:0\tk1\tline 0", f"{partition}:1\tk1\tline 1"]
    from_offset = ok(
        tidelog(broker, "consume", topic, "--partition", partition, "--offset", "20", "--max-messages", "5")
    )
    assert from_offset.splitlines() == lines[20:]
    # Nothing new after the end: --timeout-ms ends the command with what it got.
    started = time.monotonic()
    empty = tidelog(broker, "consume", topic, "--timeout-ms", "800")
    assert ok(empty) == ""
    assert "consumed 0 record(s)" in empty.stderr
    assert time.monotonic() - started < 60


def test_consume_by_timestamp_and_key_separator(broker: RunningBroker) -> None:  # noqa: F811
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    ok(tidelog(broker, "topics", "create", topic, "--partitions", "1"))
    ok(tidelog(broker, "produce", topic, "--key-separator", "=", stdin="a=old\n"))
    # The first record's timestamp was taken before its produce command returned; the next command
    # starts later (a process start-up is many milliseconds), so ``cut`` falls strictly between them.
    cut = int(time.time() * 1000)
    ok(tidelog(broker, "produce", topic, "--key-separator", "=", "--compression", "gzip", stdin="b=new1\nc=new2\n"))
    out = ok(tidelog(broker, "consume", topic, "--timestamp", str(cut), "--max-messages", "2", "--print-key"))
    assert out.splitlines() == ["b\tnew1", "c\tnew2"]
    future = ok(tidelog(broker, "consume", topic, "--timestamp", str(cut + 3_600_000), "--timeout-ms", "500"))
    assert future == ""


def test_unreachable_broker_is_one_line_and_nonzero(broker: RunningBroker) -> None:  # noqa: F811
    result = subprocess.run(
        [str(TIDELOG), "topics", "list", "--bootstrap", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    failed(result, "cannot connect to 127.0.0.1:1")
    failed(tidelog(broker, "consume", "no-such-topic-here", "--timeout-ms", "500"), "UNKNOWN_TOPIC_OR_PARTITION")
