"""kcat (Debian's, librdkafka 2.0.2: an old client) produces and consumes with every codec; the
Prometheus endpoint reports requests, records in and log sizes."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest
from tidelogbroker import RunningBroker

KCAT = shutil.which("kcat") or shutil.which("kafkacat")


def kcat(*args: str, stdin: bytes | None = None) -> bytes:
    if KCAT is None:
        pytest.fail("kcat is not installed: .ci/run installs Debian's kcat; run `apt-get install kcat`")
    done = subprocess.run([KCAT, *args], input=stdin, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_kcat_round_trip(broker: RunningBroker, codec: str) -> None:
    topic = f"kcat-{codec}"
    lines = b"".join(b"key%d:value-%s-%d\n" % (i % 3, codec.encode(), i) for i in range(100))
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-K", ":", "-z", codec, stdin=lines)
    out = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%k=%s\n")
    got = sorted(out.decode().splitlines())
    assert got == sorted(f"key{i % 3}=value-{codec}-{i}" for i in range(100))


def test_metrics_endpoint(broker: RunningBroker) -> None:
    kcat("-b", broker.bootstrap, "-P", "-t", "metered", stdin=b"one\ntwo\n")
    kcat("-b", broker.bootstrap, "-C", "-t", "metered", "-o", "beginning", "-e")
    url = f"http://127.0.0.1:{broker.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    assert 'tidelog_requests_total{api="Produce"' in text
    assert 'tidelog_records_in_total{topic="metered"} 2.0' in text
    assert 'tidelog_log_end_offset{partition="0",topic="metered"} 2.0' in text
    assert "tidelog_connections" in text
    assert 'tidelog_bytes_out_total{topic="metered"}' in text
    assert 'tidelog_records_out_total{topic="metered"} 2.0' in text
    sendfile = [
        line for line in text.splitlines() if line.startswith('tidelog_fetch_send_bytes_total{path="sendfile"}')
    ]
    assert sendfile, "no fetch went out through sendfile"
    assert float(sendfile[0].split()[-1]) > 0
    assert "tidelog_request_latency_seconds_bucket" in text
