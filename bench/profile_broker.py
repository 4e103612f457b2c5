"""Where Tidelog's broker spends its time under the produce and the fetch workload (issue 8, "Also").

    python bench/profile_broker.py [--records N] [--partitions P] [--size B] [--profiler py-spy|cprofile]
    python bench/profile_broker.py --cluster [--records N] [--partitions 1] [--produce-rate R]

Starts a fresh ``tidelog broker`` pinned to core 0 (as ``run.py`` does), then for each phase runs
the librdkafka generator on core 1 while a profiler records the broker:

- ``produce``: N records flat out (acks=1, linger 5 ms, 1 MiB batches) into a fresh topic;
- ``fetch``: the same N records read back from the beginning (warm page cache; the topic is filled
  before the profiler attaches).

py-spy (``py-spy record --pid PID --function --format speedscope``, 250 Hz, idle samples left out)
attaches to the running broker, once per phase; the speedscope files open in https://speedscope.app.
cProfile (``--profiler cprofile``, the fallback when py-spy is missing) runs the broker under
``python -m cProfile`` for both phases at once, so its table covers produce and fetch together.
Writes ``bench/results/profile-<stamp>-<phase>.*`` and prints the top functions by own time.

``--cluster``: a fresh three-broker Tidelog (``tidelog3``: etcd + 3 brokers, all on core 0) and one
phase, ``produce-rf3``: N records flat out with acks=all into an RF=3, min.insync.replicas=2 topic
(default 1 partition, so one broker leads and two follow). py-spy records the leader of partition 0
and one follower at the same time (two py-spy processes on core 1): ``-leader`` and ``-follower``
files. ``--produce-rate R``: N records at R per second (rdkgen ``steady``) instead of flat out.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from harness import generators as gen
from harness import java
from harness.systems import SEGMENT_BYTES, TidelogSystem, tidelog_command
from harness.tidelogcluster import TidelogCluster

BENCH = Path(__file__).resolve().parent
PRODUCER = {"size": 1024, "acks": "1", "compression": "none", "linger_ms": 5, "batch_size": 1_048_576}


def py_spy() -> str | None:
    """The py-spy executable: beside this interpreter, else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


# grpc.aio's completion-queue poller thread (the etcd metadata client): py-spy counts its blocking
# poll as active (the GIL is released in C), but /proc shows it nearly idle; left out of the tables.
IDLE_THREADS = ("_poll_wrapper",)


def top_speedscope(path: Path, n: int) -> list[tuple[str, float]]:
    """Functions by own time (share of samples whose innermost frame they are), all threads but
    ``IDLE_THREADS``."""
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    own: Counter[str] = Counter()
    total = 0.0
    for prof in doc["profiles"]:
        if any(t in prof.get("name", "") for t in IDLE_THREADS):
            continue
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            if stack:
                f = frames[stack[-1]]
                own[f"{f['name']} ({_short(f.get('file', '?'))}:{f.get('line', '?')})"] += weight
            total += weight
    return [(name, w / total) for name, w in own.most_common(n)] if total else []


def _short(file: str) -> str:
    for marker in ("/site-packages/", "/work/main/", "/lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


class Target:
    """The broker under test, optionally wrapped in cProfile."""

    def __init__(self, root: Path, cprofile_out: Path | None) -> None:
        self.sys = TidelogSystem(root, "0")
        self.sys.check()
        script = tidelog_command()
        if cprofile_out is not None and script is not None:
            # The harness then starts ``python -m cProfile -o FILE .../tidelog broker ...``.
            os.environ["TIDELOG_CMD"] = shlex.join([sys.executable, "-m", "cProfile", "-o", str(cprofile_out), *script])


def record_phase(spy: str | None, pid: int, out: Path, work: object, rate: int = 250) -> float:
    """Run ``work()`` while py-spy (if given) records ``pid``; returns the phase's seconds."""
    proc = None
    if spy:
        cmd = [spy, "record", "--pid", str(pid), "--function", "--rate", str(rate), "--format", "speedscope"]
        cmd += ["-o", str(out)]
        proc = subprocess.Popen(["taskset", "-c", "1", *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # let it attach
    t0 = time.monotonic()
    try:
        work()  # type: ignore[operator]
    finally:
        secs = time.monotonic() - t0
        if proc is not None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            text = proc.communicate(timeout=120)[0].decode(errors="replace")
            if not out.exists():
                raise RuntimeError(f"py-spy wrote no profile (exit {proc.returncode}):\n{text[-2000:]}")
    return secs


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (utime+stime) per thread of ``pid``, keyed ``tid name``."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[f"{task.name} {name}"] = (int(fields[11]) + int(fields[12])) / tick
    return out


def record_many(spy: str, pids: dict[str, int], outs: dict[str, Path], work: object, rate: int = 250) -> float:
    """``record_phase`` for several processes at once (one py-spy each)."""
    procs = {}
    for role, pid in pids.items():
        cmd = [spy, "record", "--pid", str(pid), "--function", "--rate", str(rate), "--format", "speedscope"]
        cmd += ["-o", str(outs[role])]
        procs[role] = subprocess.Popen(["taskset", "-c", "1", *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(1.0)
    t0 = time.monotonic()
    try:
        work()  # type: ignore[operator]
    finally:
        secs = time.monotonic() - t0
        for role, proc in procs.items():
            proc.send_signal(signal.SIGINT)
            text = proc.communicate(timeout=120)[0].decode(errors="replace")
            if not outs[role].exists():
                raise RuntimeError(f"py-spy ({role}) wrote no profile (exit {proc.returncode}):\n{text[-2000:]}")
    return secs


def cluster_main(a: argparse.Namespace, spy: str | None, stamp: str) -> int:
    """Leader and follower of an RF=3 acks=all topic on a three-broker Tidelog, profiled together."""
    if spy is None:
        print("--cluster needs py-spy (pip install py-spy==0.4.3)", file=sys.stderr)
        return 2
    s = TidelogCluster(a.data_root, "0")
    s.check()
    p = dict(PRODUCER, size=a.size, acks="all")
    s.start()
    summary: dict[str, object] = {"records": a.records, "partitions": a.partitions, "size": a.size, "rf": 3}
    try:
        topic = f"profile-{a.partitions}p-rf3"
        config = {"segment.bytes": str(SEGMENT_BYTES), "min.insync.replicas": "2"}
        gen.create_topic(s.bootstrap, topic, a.partitions, config, 3)
        part0 = gen.leaders(s.bootstrap, topic)[0]
        leader = int(part0["leader"])
        follower = next(int(r) for r in part0["replicas"] if int(r) != leader)
        summary["leader"], summary["follower"] = leader, follower
        pids = {"leader": s.procs[leader - 1].pid, "follower": s.procs[follower - 1].pid}
        outs = {role: a.out / f"profile-{stamp}-produce-rf3-{role}.speedscope.json" for role in pids}

        def work() -> None:
            if a.produce_rate:  # a fixed rate (ack latency), not flat out
                secs = a.records / a.produce_rate
                summary["produce"] = gen.rdk_steady("1", s.bootstrap, topic, a.produce_rate, secs, p)
            else:
                summary["produce"] = gen.rdk_produce("1", s.bootstrap, topic, a.records, p)

        cpu0 = {role: thread_cpu(pid) for role, pid in pids.items()}
        secs = record_many(spy, pids, outs, work, a.rate)
        cpu1 = {role: thread_cpu(pid) for role, pid in pids.items()}
        summary["thread_cpu_s"] = {
            role: {t: round(v - cpu0[role].get(t, 0.0), 3) for t, v in cpu1[role].items() if v - cpu0[role].get(t, 0.0)}
            for role in pids
        }
        print(f"== produce acks=all RF=3: {a.records} x {a.size} B x {a.partitions}p in {secs:.1f} s")
        print(f"   {summary['produce']}; partition 0: leader node {leader}, follower node {follower}")
        for role, out in outs.items():
            busy = summary["thread_cpu_s"][role]  # type: ignore[index]
            print(f"-- {role} (node {summary[role]}), CPU-s by thread over the phase: {busy}; py-spy own time:")
            for name, share in top_speedscope(out, a.top):
                print(f"  {share:6.1%}  {name}")
            print(f"  -> {out}")
    finally:
        s.stop()
    (a.out / f"profile-{stamp}-rf3.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, help="default 16 (--cluster: 1)")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--profiler", choices=["py-spy", "cprofile"], default="py-spy")
    ap.add_argument("--out", type=Path, default=BENCH / "results")
    ap.add_argument("--data-root", type=Path, default=java.cache_root() / "data" / "profile")
    ap.add_argument("--cluster", action="store_true", help="three brokers: leader and follower under RF=3 acks=all")
    ap.add_argument("--produce-rate", type=float, help="--cluster: produce at this fixed rate instead of flat out")
    a = ap.parse_args(argv)
    spy = py_spy() if a.profiler == "py-spy" else None
    if a.profiler == "py-spy" and spy is None:
        print("py-spy not found (pip install py-spy==0.4.3); falling back to cProfile", file=sys.stderr)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    a.out.mkdir(parents=True, exist_ok=True)
    if a.partitions is None:
        a.partitions = 1 if a.cluster else 16
    if a.cluster:
        return cluster_main(a, spy, stamp)
    cprof = None if spy else a.out / f"profile-{stamp}-cprofile.prof"
    target = Target(a.data_root, cprof)
    s = target.sys
    p = dict(PRODUCER, size=a.size)
    s.start()
    summary: dict[str, object] = {"records": a.records, "partitions": a.partitions, "size": a.size}
    try:
        topic = f"profile-{a.partitions}p"
        gen.create_topic(s.bootstrap, topic, a.partitions, {"segment.bytes": str(SEGMENT_BYTES)})
        phases = {
            "produce": lambda: summary.__setitem__("produce", gen.rdk_produce("1", s.bootstrap, topic, a.records, p)),
            "fetch": lambda: summary.__setitem__("fetch", gen.rdk_consume("1", s.bootstrap, topic, a.records)),
        }
        for phase, work in phases.items():
            out = a.out / f"profile-{stamp}-{phase}.speedscope.json"
            secs = record_phase(spy, s.pid, out, work, a.rate)
            print(f"== {phase}: {a.records} x {a.size} B x {a.partitions}p in {secs:.1f} s ({summary[phase]})")
            if spy:
                for name, share in top_speedscope(out, a.top):
                    print(f"  {share:6.1%}  {name}")
                print(f"  -> {out}")
    finally:
        s.stop()  # SIGTERM: cProfile writes its file when the broker exits cleanly
    if cprof is not None:
        if not cprof.exists():
            print(f"cProfile wrote nothing (broker log tail):\n{s.log_tail()}", file=sys.stderr)
            return 1
        print("== produce + fetch (cProfile), top by own time:")
        pstats.Stats(str(cprof)).sort_stats("tottime").print_stats(a.top)
    (a.out / f"profile-{stamp}.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
