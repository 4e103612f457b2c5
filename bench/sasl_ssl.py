"""SASL_SSL throughput, Tidelog vs Apache Kafka 4.1.1 side by side (issue 9, performance part).

    .venv/bin/python bench/sasl_ssl.py [--records 400000] [--size 1024] [--rounds 3] [--profile]

Both brokers get a PLAINTEXT listener (readiness, topic creation, the SCRAM user) and a SASL_SSL one
with the same PEM keystore (an EC P-256 certificate from tests/support/certs.py) and SCRAM-SHA-512;
both negotiate TLS 1.3 with their default cipher suites (the suite each negotiated, read with
``openssl s_client``, goes into the report). The user ``bench`` is made on both with the Admin API
(AlterUserScramCredentials) over PLAINTEXT. Each round starts each system fresh (``harness.systems``:
wiped data dir, broker pinned to core 0), alternating which goes first, and runs over SASL_SSL:

- a warm-up (unmeasured: the JVM's JIT, Tidelog's first-request imports);
- produce: ``rdkgen produce`` (confluent-kafka, acks=1, linger 5 ms, 1 MiB batches, 1 KiB records)
  into a fresh topic of 1 and of 16 partitions, pinned to core 1;
- consume: kcat (C) from offset 0 to the end of that topic, pinned to core 1 (warm page cache on
  both), run on the librdkafka that confluent-kafka bundles (see ``kcat_env``) with
  ``fetch.queue.backoff.ms=1`` (as ``rdkgen`` sets: librdkafka >= 2.4 otherwise pauses a partition
  1 s whenever its local queue is full).

Prints a Markdown table (median [min, max] MB/s, the ratio Tidelog/Kafka against the issue's 0.8x
target, broker CPU-s per GB) and writes it to ``bench/results/<stamp>-sasl-ssl.md`` with the load
average. ``--profile``: afterwards, py-spy records a fresh Tidelog broker under the same SASL_SSL
produce and consume (``bench/results/profile-<stamp>-sasl-ssl-<phase>.speedscope.json``) and the
top functions by own time are printed and appended to the results file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
from harness import generators as gen
from harness import procstat
from harness.systems import SEGMENT_BYTES, KafkaSystem, System, TidelogSystem, free_port

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests" / "support"))
from certs import Pki, make_pki  # type: ignore[import-not-found]  # noqa: E402

USER, PASSWORD = "bench", "bench-secret-2026"
BROKER_CPU, CLIENT_CPU = "0", "1"
PRODUCER = {"acks": "1", "compression": "none", "linger_ms": 5, "batch_size": 1 << 20}
PARTITIONS = (1, 16)
WARMUP_RECORDS = 100_000


def client_props(pki: Pki) -> dict[str, str]:
    """librdkafka settings of every client over SASL_SSL (hostname verification on: the broker
    certificate names 127.0.0.1)."""
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": USER,
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(pki.ca),
    }


class KafkaSaslSsl(KafkaSystem):
    """The harness' Kafka plus a SASL_SSL listener: PEM keystore, SCRAM-SHA-512."""

    def __init__(self, data_root: Path, cpu: str | None, pki: Pki) -> None:
        super().__init__(data_root, cpu)
        self.pki = pki
        self.secure_port = 0

    def _properties(self, data_dir: Path, controller_port: int) -> str:
        self.secure_port = free_port()
        plain, secure = f"127.0.0.1:{self.port}", f"127.0.0.1:{self.secure_port}"
        replace = {
            "listeners": f"PLAINTEXT://{plain},SASL_SSL://{secure},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{plain},SASL_SSL://{secure}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
        }
        lines = []
        for line in filter(None, super()._properties(data_dir, controller_port).splitlines()):
            key = line.split("=", 1)[0]
            lines.append(f"{key}={replace[key]}" if key in replace else line)
        lines += [
            "inter.broker.listener.name=PLAINTEXT",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={self.pki.broker}",
            "",
        ]
        return "\n".join(lines)


class TidelogSaslSsl(TidelogSystem):
    """The harness' Tidelog plus a SASL_SSL listener: the same PEM keystore, SCRAM-SHA-512."""

    def __init__(self, data_root: Path, cpu: str | None, pki: Pki) -> None:
        super().__init__(data_root, cpu)
        self.pki = pki
        self.secure_port = 0

    def _command(self, data_dir: Path) -> tuple[list[str], dict[str, str]]:
        cmd, env = super()._command(data_dir)
        self.secure_port = free_port()
        i = cmd.index("--listen")
        cmd[i + 1] = f"PLAIN://{self.bootstrap},SECURE://127.0.0.1:{self.secure_port}"
        cmd += ["--set", "listener.security.protocol.map=PLAIN:PLAINTEXT,SECURE:SASL_SSL",
                "--set", f"ssl.keystore.location={self.pki.broker}",
                "--set", "sasl.enabled.mechanisms=SCRAM-SHA-512"]  # fmt: skip
        return cmd, env


def x_args(props: dict[str, str]) -> list[str]:
    return [a for k, v in props.items() for a in ("-X", f"{k}={v}")]


def add_user(system: KafkaSaslSsl | TidelogSaslSsl, pki: Pki) -> None:
    """Make the SCRAM user over PLAINTEXT, then wait until it can log in over SASL_SSL."""
    admin = AdminClient({"bootstrap.servers": system.bootstrap})
    upsert = UserScramCredentialUpsertion(
        USER, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), PASSWORD.encode()
    )
    for fut in admin.alter_user_scram_credentials([upsert]).values():  # type: ignore[arg-type]
        fut.result(30)
    secure = f"127.0.0.1:{system.secure_port}"
    deadline = time.monotonic() + 30
    while True:
        probe = gen.rdkgen_cmd("ready", "--bootstrap", secure, "--timeout", "3", *x_args(client_props(pki)))
        if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{system.name}: SCRAM login over SASL_SSL failed for 30 s:\n{system.log_tail()}")
        time.sleep(0.2)


def negotiated(port: int, pki: Pki) -> str:
    """TLS version and cipher suite the broker picks for a default OpenSSL client."""
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(pki.ca), "-brief"],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    text = out.stdout + out.stderr
    proto = re.search(r"Protocol version: (\S+)", text)
    suite = re.search(r"Ciphersuite: (\S+)", text)
    peer = re.search(r"(?:Negotiated TLS1.3 group|Server Temp Key|Peer Temp Key): ([^\n]+)", text)
    return " ".join(m.group(1).strip() for m in (proto, suite, peer) if m) or text.strip()[-200:]


def create(system: System, topic: str, partitions: int) -> None:
    gen.create_topic(system.bootstrap, topic, partitions, {"segment.bytes": str(SEGMENT_BYTES)})


def produce(system: KafkaSaslSsl | TidelogSaslSsl, pki: Pki, topic: str, records: int, size: int) -> float:
    """Records flat out through SASL_SSL; MB/s (first produce() call to the last ack)."""
    cmd = gen.rdkgen_cmd(
        "produce", "--bootstrap", f"127.0.0.1:{system.secure_port}", "--topic", topic, "--count", str(records),
        "--size", str(size), "--acks", PRODUCER["acks"], "--compression", PRODUCER["compression"],
        "--linger-ms", str(PRODUCER["linger_ms"]), "--batch-size", str(PRODUCER["batch_size"]),
        *x_args(client_props(pki)),
    )  # fmt: skip
    out = subprocess.run(["taskset", "-c", CLIENT_CPU, *cmd], capture_output=True, text=True, timeout=600, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["errors"] or res["records"] != records:
        raise RuntimeError(f"{system.name}: produce errors: {res}")
    return float(records * size / res["seconds"] / 1e6)


def kcat_env(tmp: Path) -> dict[str, str]:
    """kcat's environment: the librdkafka that confluent-kafka bundles (2.16 here), so that both
    clients run the same library. Debian's kcat links librdkafka 2.0.2, whose SCRAM-SHA-512 log-in
    Kafka 4.1.1 refuses ("invalid credentials") while it accepts 2.16's with the same user."""
    import confluent_kafka  # noqa: PLC0415

    libs = sorted((Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs").glob("librdkafka*.so*"))
    if not libs:
        return dict(os.environ)
    (tmp / "rdklib").mkdir(exist_ok=True)
    link = tmp / "rdklib" / "librdkafka.so.1"
    link.unlink(missing_ok=True)
    link.symlink_to(libs[0])
    return dict(os.environ, LD_LIBRARY_PATH=str(link.parent))


KCAT_ENV: dict[str, str] = dict(os.environ)


def consume(system: KafkaSaslSsl | TidelogSaslSsl, pki: Pki, topic: str, records: int, size: int) -> float:
    """kcat from offset 0 to the end of every partition through SASL_SSL; MB/s of the whole run
    (connection and SCRAM log-in included: the same few ms on both)."""
    cmd = ["taskset", "-c", CLIENT_CPU, "kcat", "-b", f"127.0.0.1:{system.secure_port}", "-C", "-t", topic,
           "-o", "beginning", "-e", "-q", "-f", "%o\n", *x_args(client_props(pki)),
           "-X", "fetch.queue.backoff.ms=1"]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=KCAT_ENV)
    secs = time.perf_counter() - t0
    got = done.stdout.count("\n")
    if done.returncode != 0 or got != records:
        raise RuntimeError(
            f"{system.name}: kcat read {got} of {records} (exit {done.returncode}): {done.stderr[-500:]}"
        )
    return records * size / secs / 1e6


Metrics = dict[tuple[str, str], list[float]]  # (metric, system) -> one value per round


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def measured(pid: int, work: Callable[[], float]) -> tuple[float, float, float]:
    """``work()``'s MB/s, the broker's CPU-seconds spent during it, and the share of its wall time
    the client process was on a CPU (near 1.0: the client, not the broker, set the pace)."""
    cpu0, client0, t0 = procstat.cpu_seconds(pid), _children_cpu(), time.monotonic()
    mbs = work()
    wall = time.monotonic() - t0
    return mbs, procstat.cpu_seconds(pid) - cpu0, (_children_cpu() - client0) / wall


def run_system(system: KafkaSaslSsl | TidelogSaslSsl, pki: Pki, a: argparse.Namespace, r: int, out: Metrics) -> str:
    """One round on a fresh broker: warm-up, then produce and consume per partition count. Returns
    the negotiated TLS parameters."""
    system.start()
    try:
        add_user(system, pki)
        tls = negotiated(system.secure_port, pki)
        create(system, "warmup", 1)
        produce(system, pki, "warmup", WARMUP_RECORDS, a.size)
        consume(system, pki, "warmup", WARMUP_RECORDS, a.size)
        gb = a.records * a.size / 1e9
        for parts in PARTITIONS:
            topic = f"sasl-{parts}p-{r}"
            create(system, topic, parts)
            for what, fn in (("produce", produce), ("consume", consume)):
                mbs, cpu, client = measured(system.pid, lambda fn=fn, t=topic: fn(system, pki, t, a.records, a.size))  # type: ignore[misc]
                out.setdefault((f"{what}-{parts}p", system.name), []).append(mbs)
                out.setdefault((f"{what}-{parts}p-cpu", system.name), []).append(cpu / gb)
                out.setdefault((f"{what}-{parts}p-client", system.name), []).append(client)
                print(f"  round {r + 1} {system.name:8} {what} {parts:2}p: {mbs:7.1f} MB/s, broker {cpu / gb:.2f} "
                      f"CPU-s/GB, client busy {client:.2f}", flush=True)  # fmt: skip
        return tls
    finally:
        system.stop()


def spread(vals: list[float], fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(statistics.median(vals))} [{fmt.format(min(vals))}, {fmt.format(max(vals))}]"


def table(m: Metrics, a: argparse.Namespace) -> str:
    rows = [
        f"| SASL_SSL, SCRAM-SHA-512, {a.size} B records, median [min, max] of {a.rounds} | Kafka 4.1.1 MB/s "
        "| Tidelog MB/s | T/K | target ≥ 0.8 | broker CPU-s per GB, K / T | client core busy, K / T |",
        "|---|---|---|---|---|---|---|",
    ]
    for what, label in (("produce", "produce (confluent-kafka, acks=1, linger 5 ms, 1 MiB batches)"),
                        ("consume", "consume (kcat, offset 0 to the end, warm page cache)")):  # fmt: skip
        for parts in PARTITIONS:
            k, t = m[(f"{what}-{parts}p", "kafka")], m[(f"{what}-{parts}p", "tidelog")]
            ratio = statistics.median(t) / statistics.median(k)
            kc, tc = m[(f"{what}-{parts}p-cpu", "kafka")], m[(f"{what}-{parts}p-cpu", "tidelog")]
            cpu = f"{statistics.median(kc):.2f} / {statistics.median(tc):.2f}"
            kb, tb = m[(f"{what}-{parts}p-client", "kafka")], m[(f"{what}-{parts}p-client", "tidelog")]
            cpu += f" | {statistics.median(kb):.2f} / {statistics.median(tb):.2f}"
            rows.append(f"| {label}, {parts} partition{'s' if parts > 1 else ''} | {spread(k)} | {spread(t)} "
                        f"| {ratio:.2f} | {'met' if ratio >= 0.8 else '**missed**'} | {cpu} |")  # fmt: skip
    return "\n".join(rows)


def profile(pki: Pki, root: Path, a: argparse.Namespace, stamp: str) -> str:
    """py-spy on a fresh Tidelog under the SASL_SSL produce and then consume; top own-time frames."""
    import profile_broker as pb  # noqa: PLC0415 - only with --profile

    spy = pb.py_spy()
    if spy is None:
        return "py-spy not found: no profile"
    system = TidelogSaslSsl(root, BROKER_CPU, pki)
    system.start()
    lines = []
    try:
        add_user(system, pki)
        create(system, "warmup", 1)
        produce(system, pki, "warmup", WARMUP_RECORDS, a.size)
        for parts in PARTITIONS:
            topic = f"profile-{parts}p"
            create(system, topic, parts)
            for what, fn in (("produce", produce), ("consume", consume)):
                path = BENCH / "results" / f"profile-{stamp}-sasl-ssl-{what}-{parts}p.speedscope.json"
                cpu0 = pb.thread_cpu(system.pid)
                secs = pb.record_phase(
                    spy, system.pid, path, lambda fn=fn, t=topic: fn(system, pki, t, a.records, a.size)
                )  # type: ignore[misc]
                cpu1 = pb.thread_cpu(system.pid)
                busy = {t: cpu1[t] - cpu0.get(t, 0.0) for t in cpu1}
                threads = ", ".join(f"{t}: {v:.2f}" for t, v in sorted(busy.items(), key=lambda x: -x[1])[:3])
                lines += [f"\n{what} {parts}p ({secs:.1f} s; CPU-s by thread: {threads}); {path.name}", ""]
                lines += [f"    {share * 100:5.1f} %  {name}" for name, share in pb.top_speedscope(path, 25)]
    finally:
        system.stop()
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=400_000, help="records per workload and round")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="afterwards, py-spy the Tidelog broker")
    a = ap.parse_args()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sasl-ssl-") as tmpdir:
        tmp = Path(tmpdir)
        pki = make_pki(tmp / "pki")
        KCAT_ENV.update(kcat_env(tmp))
        root = Path(os.environ.get("TIDELOG_BENCH_CACHE", Path.home() / ".cache" / "tidelog-bench")) / "data" / "sasl"
        kafka, tidelog = KafkaSaslSsl(root, BROKER_CPU, pki), TidelogSaslSsl(root, BROKER_CPU, pki)
        kafka.check()
        tidelog.check()
        m: Metrics = {}
        tls: dict[str, str] = {}
        loads = [load0]
        for r in range(a.rounds):
            order = (kafka, tidelog) if r % 2 == 0 else (tidelog, kafka)
            for system in order:
                tls[system.name] = run_system(system, pki, a, r, m)
                loads.append(os.getloadavg())
        body = table(m, a)
        prof = profile(pki, root, a, stamp) if a.profile else ""
        shutil.rmtree(root, ignore_errors=True)  # the brokers' logs: GBs per run
    load_text = ", ".join(f"{x[0]:.2f}" for x in loads)
    cmd = shlex.join([".venv/bin/python", "bench/sasl_ssl.py", *sys.argv[1:]])
    report = "\n".join([
        f"# SASL_SSL throughput, Tidelog vs Apache Kafka 4.1.1 ({stamp})", "",
        f"Command: `{cmd}`. {a.records} records of {a.size} B per workload and round, {a.rounds} rounds, "
        "systems alternating (each round starts each broker fresh), broker on core 0, clients on core 1.",
        f"1-minute load average at the start and after each system's round: {load_text} (2 cores).",
        f"Negotiated (openssl s_client, default client): Kafka {tls['kafka']}; Tidelog {tls['tidelog']}.",
        "", body, "",
    ])  # fmt: skip
    if prof:
        report += "\n## Tidelog profile under SASL_SSL (py-spy, own time, share of non-idle samples)\n\n```" + prof
        report += "\n```\n"
    print(report)
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / f"{stamp}-sasl-ssl.md").write_text(report)


if __name__ == "__main__":
    main()
