"""What TLS costs a Tidelog broker: produce and consume throughput through a PLAINTEXT listener and
an SSL listener of the same broker, in the same run, alternating, as ratios (SSL / PLAINTEXT).

    .venv/bin/python bench/tls_cost.py [--records 20000] [--size 10240] [--rounds 3]

librdkafka on both sides: the producer (confluent-kafka) with acks=1, 1 MiB batches, linger 5 ms;
kcat reading everything back from offset 0 (the SSL listener cannot use sendfile: records are read
from the page cache and encrypted in user space, as in Kafka). The Python consumer is not used for
reading: its per-message cost, not the broker, set its pace (and oddly more so in plaintext). Certificates come from
tests/support/certs.py (openssl). Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))
from certs import Pki, make_pki  # type: ignore[import-not-found]  # noqa: E402
from harness.systems import free_port  # noqa: E402 - bench/ is on sys.path when run as a script

TIDELOG = Path(sys.executable).with_name("tidelog")


@contextlib.contextmanager
def broker(tmp: Path, pki: Pki) -> Iterator[dict[str, int]]:
    ports = {"PLAIN": free_port(), "TLS": free_port()}
    cmd = [str(TIDELOG), "broker", "--data-dir", str(tmp / "data"), "--metrics-port", "0",
           "--listen", f"PLAIN://127.0.0.1:{ports['PLAIN']},TLS://127.0.0.1:{ports['TLS']}",
           "--set", "listener.security.protocol.map=PLAIN:PLAINTEXT,TLS:SSL",
           "--set", f"ssl.keystore.location={pki.broker}"]  # fmt: skip
    with (tmp / "broker.log").open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", ports["TLS"]), 1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((tmp / "broker.log").read_text()[-2000:])
            time.sleep(0.1)
        yield ports
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def conf(pki: Pki, port: int, tls: bool) -> dict[str, object]:
    out: dict[str, object] = {"bootstrap.servers": f"127.0.0.1:{port}"}
    if tls:
        out |= {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca)}
    return out


def produce(base: dict[str, object], topic: str, records: int, size: int) -> float:
    p = Producer({**base, "acks": "1", "linger.ms": 5, "batch.size": 1 << 20, "compression.type": "none",
                  "queue.buffering.max.kbytes": 1 << 20})  # fmt: skip
    value = bytes(size)
    start = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(120)
    return records * size / (time.perf_counter() - start) / 1e6


def consume(pki: Pki, port: int, tls: bool, topic: str, records: int, size: int) -> float:
    """kcat (librdkafka, C) reads the topic from the start to its end: the Python consumer's own
    per-message cost would hide the broker's."""
    args = ["kcat", "-b", f"127.0.0.1:{port}", "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o\n"]
    if tls:
        args += ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki.ca}"]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=True)
    elapsed = time.perf_counter() - start
    got = len(done.stdout.split())
    if got != records:
        raise RuntimeError(f"kcat read {got} of {records} records: {done.stderr[-500:]}")
    return records * size / elapsed / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        pki = make_pki(tmp / "pki")
        with broker(tmp, pki) as ports:
            results: dict[tuple[str, str], list[float]] = {}
            for r in range(args.rounds):
                for name, tls in (("PLAINTEXT", False), ("SSL", True)):
                    base = conf(pki, ports["TLS" if tls else "PLAIN"], tls)
                    topic = f"t-{name}-{r}"
                    results.setdefault((name, "produce"), []).append(produce(base, topic, args.records, args.size))
                    port = ports["TLS" if tls else "PLAIN"]
                    results.setdefault((name, "consume"), []).append(
                        consume(pki, port, tls, topic, args.records, args.size)
                    )
    head = f"{args.records} records of {args.size} B, median of {args.rounds}"
    print(f"| {head} | PLAINTEXT MB/s | SSL MB/s | SSL / PLAINTEXT |")
    print("|---|---|---|---|")
    for what in ("produce", "consume"):
        plain = statistics.median(results[("PLAINTEXT", what)])
        secure = statistics.median(results[("SSL", what)])
        client = "librdkafka, confluent-kafka" if what == "produce" else "kcat, from the start to the end"
        print(f"| {what} ({client}) | {plain:.0f} | {secure:.0f} | {secure / plain:.2f} |")


if __name__ == "__main__":
    main()
