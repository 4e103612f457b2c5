"""Runs the benchmark: Apache Kafka and Tidelog side by side, plus the machine's physical limits.

    python bench/run.py --profile quick|default|full [--systems kafka,tidelog]

Writes bench/results/<timestamp>.{md,json} and bench/results/latest.md. See bench/README.md for
the method; the pieces live in bench/harness/ and bench/limits.py.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from pathlib import Path

import limits
from harness import java, machine, report
from harness.runner import Results, log, run_profile
from harness.systems import SYSTEMS, SystemUnavailableError
from harness.workloads import PROFILES

BENCH = Path(__file__).resolve().parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    ap.add_argument(
        "--systems",
        default="kafka,tidelog",
        help="comma-separated, run in this order each round (default kafka,tidelog)",
    )
    ap.add_argument("--repeats", type=int, help="rounds (default: the profile's, at least 3)")
    ap.add_argument("--workloads", default="", help="only workloads whose name contains this")
    ap.add_argument("--no-limits", action="store_true", help="skip the physical-limit probes")
    ap.add_argument("--unpinned", action="store_true", help="no taskset (what users see)")
    ap.add_argument(
        "--data-root",
        type=Path,
        default=java.cache_root() / "data",
        help="brokers' data directories (default: under the bench cache)",
    )
    ap.add_argument("--out", type=Path, default=BENCH / "results")
    ap.add_argument("--list", action="store_true", help="print the profile's workloads and exit")
    return ap.parse_args(argv)


def _terminate(signum: int, _frame: object) -> None:
    # SystemExit unwinds through run_profile's finally blocks, which stop the brokers we started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    a = parse(argv)
    profile = PROFILES[a.profile]
    if a.workloads:
        profile = type(profile)(
            profile.name,
            [w for w in profile.workloads if a.workloads in w.name],
            profile.repeats,
            profile.limits,
            profile.warmup_records,
            profile.targets,
            profile.ack_warmup_s,
        )
    if a.list:
        for w in profile.workloads:
            print(f"{w.name:45} {w.describe()}")
        return 0
    broker_cpu, gen_cpu = (None, None) if a.unpinned else ("0", "1")
    names = [s.strip() for s in a.systems.split(",") if s.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        print(f"unknown system(s): {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}", file=sys.stderr)
        return 2
    systems = [SYSTEMS[n](a.data_root, broker_cpu) for n in names]
    try:
        for s in systems:
            s.check()
    except SystemUnavailableError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    repeats = a.repeats or profile.repeats
    if repeats < 3:
        log(f"warning: {repeats} repeat(s): the method asks for at least 3 (median, min, max)")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "python bench/run.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": machine.describe(),
        "systems": names,
        "repeats": repeats,
        "broker_cpu": broker_cpu,
        "generator_cpu": gen_cpu,
        "kafka_version": java.KAFKA_VERSION,
    }
    lim: dict[str, object] = {}
    if not a.no_limits and profile.limits != "none":
        log(f"physical limits ({profile.limits})")
        lim = limits.measure(profile.limits, a.data_root / "limits", broker_cpu, gen_cpu)
    results = run_profile(profile, systems, repeats, gen_cpu, Results())
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    js, md = report.write(a.out, stamp, profile, results, lim, meta)
    print(md.read_text())
    log(f"wrote {md} and {js}")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
