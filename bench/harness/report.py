"""Turns raw samples into the report: median/min/max per metric and system, limits, ratios.

Writes ``<out>/<timestamp>.json`` (everything, raw samples included) and ``<timestamp>.md`` (the
table), and copies the markdown to ``latest.md``. The ``limit`` column maps a workload's metric to
the physical limit (``bench/limits.py``) that bounds it; ratios are Tidelog/Kafka, Tidelog/limit
and Kafka/limit.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from harness.runner import Results
from harness.workloads import Profile

METRICS = [
    "records_per_s",
    "MB_per_s",
    "p50_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "mean_ms",
    "cpu_s_per_GB",
    "cpu_s_per_Mrec",
    "rss_peak_MB",
    "generator_cpu_util",
    "startup_s",
    "idle_rss_MB",
    "join_s",
    "rebalance_s",
    "failover_s",
    "failover_max_s",
]
# Columns, in this order, for the systems a run has (kafka3: three brokers, see harness/cluster.py).
COLUMNS = {"kafka": "Kafka", "kafka3": "Kafka, 3 brokers", "tidelog": "Tidelog", "tidelog3": "Tidelog, 3 brokers"}
# T/K: Tidelog over Kafka, single broker against single broker, three against three.
PAIRS = (("tidelog", "kafka"), ("tidelog3", "kafka3"))


def _stats(values: list[float]) -> dict[str, float] | None:
    vals = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def limit_for(workload: str, metric: str, lim: dict[str, Any]) -> tuple[float, str] | None:
    """The physical limit bounding ``metric`` of ``workload``, with its name, if one applies."""
    net = lim.get("loopback_MBps_cross_core")
    if metric == "MB_per_s" and net:
        if workload.startswith("produce"):
            disk, what = lim.get("pagecache_write_MBps"), "page-cache write"
        elif workload.endswith(("-cold-rdk", "-cold-perf")):
            disk, what = lim.get("buffered_read_cold_MBps"), "cold buffered read"
        elif workload.startswith("consume"):
            disk, what = lim.get("pagecache_read_MBps"), "page-cache read"
        else:
            return None
        if disk is None:
            return float(net), "loopback TCP"
        return (float(net), "loopback TCP") if net < disk else (float(disk), what)
    rtt = lim.get("rtt_us_cross_core", {}).get("p50_us")
    if metric == "p50_ms" and rtt and workload.startswith(("latency", "pingpong")):
        return rtt / 1000, "1 loopback RTT p50"
    return None


def aggregate(results: Results, limits: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for wname, by_sys in results.samples.items():
        for metric in METRICS:
            stats = {
                s: _stats([x.get(metric, math.nan) for x in samples if not x.get("excluded")])
                for s, samples in by_sys.items()
            }
            stats = {s: v for s, v in stats.items() if v is not None}
            if not stats:
                continue
            row: dict[str, Any] = {"workload": wname, "metric": metric, "systems": stats}
            lim = limit_for(wname, metric, limits)
            if lim:
                row["limit"], row["limit_name"] = lim
            pair = next(((t, k) for t, k in PAIRS if t in stats and k in stats), PAIRS[0])
            k, t = stats.get(pair[1]), stats.get(pair[0])
            if k and t and k["median"]:
                row["tidelog_over_kafka"] = t["median"] / k["median"]
            if lim and t:
                row["tidelog_over_limit"] = t["median"] / lim[0]
            if lim and k:
                row["kafka_over_limit"] = k["median"] / lim[0]
            rows.append(row)
    return rows


def _num(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def _cell(s: dict[str, float] | None) -> str:
    if not s:
        return "—"
    if s["n"] == 1:
        return _num(s["median"])
    return f"{_num(s['median'])} [{_num(s['min'])}, {_num(s['max'])}]"


def _skipped_cell(doc: dict[str, Any], workload: str, system: str, stats: dict[str, Any] | None) -> str:
    if not stats and system in doc.get("skipped", {}).get(workload, {}):
        return "— (n/a, see note)"
    return _cell(stats)


def _rows_with_skips(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The aggregated rows plus one placeholder row per workload that no system could run."""
    seen = {r["workload"] for r in doc["rows"]}
    extra = [{"workload": w, "metric": "—", "systems": {}} for w in doc.get("skipped", {}) if w not in seen]
    return list(doc["rows"]) + extra


def _ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def _targets(doc: dict[str, Any]) -> list[str]:
    """The profile's issue targets on T/K medians: met, missed, or not measured."""
    if not doc.get("targets"):
        return []
    rows = {(r["workload"], r["metric"]): r for r in doc["rows"]}
    out = ["", "Targets (Tidelog/Kafka, medians):", "", "| workload | metric | target | T/K | result |"]
    out.append("|---|---|---|---|---|")
    for wname, metric, op, bound in doc["targets"]:
        ratio = rows.get((wname, metric), {}).get("tidelog_over_kafka")
        if ratio is None:
            verdict = "not measured"
        else:
            verdict = "met" if (ratio >= bound if op == ">=" else ratio <= bound) else "**missed**"
        out.append(f"| {wname} | {metric} | {op} {bound:g}x | {_ratio(ratio)} | {verdict} |")
    return out


def markdown(doc: dict[str, Any]) -> str:
    m, lim = doc["machine"], doc["limits"]
    out = [
        f"# Tidelog vs Apache Kafka — profile `{doc['profile']}`, {doc['started']}",
        "",
        f"Command: `{doc['command']}`  ",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, kernel "
        f"{m['kernel']}, {m['os']}; {m['java']}; Python {m['python']}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}.  ",
        f"Pinning: broker `{doc['broker_cpu'] or 'unpinned'}`, generator "
        f"`{doc['generator_cpu'] or 'unpinned'}`; {doc['repeats']} repeats, systems alternating "
        f"{' / '.join(doc['systems'])} per round; cells are median [min, max]. MB = 10^6 bytes.",
        "",
    ]
    single = not set(doc["systems"]) <= {"kafka3", "tidelog3"}
    cols = [c for c in COLUMNS if c in doc["systems"] or (single and c in ("kafka", "tidelog"))]
    out += [
        "| workload | metric | " + " | ".join(COLUMNS[c] for c in cols) + " | limit | T/K | T/limit | K/limit |",
        "|---|---|" + "---|" * len(cols) + "---|---|---|---|",
    ]
    for r in _rows_with_skips(doc):
        s, w = r["systems"], r["workload"]
        limit = f"{_num(r['limit'])} ({r['limit_name']})" if "limit" in r else "—"
        cells = " | ".join(_skipped_cell(doc, w, c, s.get(c)) for c in cols)
        out.append(
            f"| {w} | {r['metric']} | {cells} | {limit} | {_ratio(r.get('tidelog_over_kafka'))}"
            f" | {_ratio(r.get('tidelog_over_limit'))} | {_ratio(r.get('kafka_over_limit'))} |"
        )
    out += _targets(doc)
    notes = sorted({(sys_, why) for by in doc.get("skipped", {}).values() for sys_, why in by.items()})
    if notes:
        out += ["", "Not run (cells '— (n/a, see note)'):", ""]
        out += [f"- {COLUMNS.get(sys_, sys_)}: {why}" for sys_, why in notes]
    out += ["", "Workloads:", ""]
    out += [f"- `{name}`: {desc}" for name, desc in doc["workloads"].items()]
    if doc["rates"]:
        out += ["", "Fixed rates:", ""]
        out += [f"- `{k}`: {v['rate']:.0f} records/s ({v['source']})" for k, v in doc["rates"].items()]
    if lim:
        out += ["", "Physical limits (same run):", "", "```", json.dumps(lim, indent=1), "```"]
    if doc["errors"]:
        out += ["", "Errors:", ""] + [f"- {e.splitlines()[0]}" for e in doc["errors"]]
    return "\n".join(out) + "\n"


def write(
    out_dir: Path, stamp: str, profile: Profile, results: Results, limits: dict[str, Any], meta: dict[str, Any]
) -> tuple[Path, Path]:
    doc: dict[str, Any] = dict(meta)
    doc.update(
        {
            "profile": profile.name,
            "targets": [list(t) for t in profile.targets],
            "workloads": {w.name: w.describe() for w in profile.workloads},
            "limits": limits,
            "rates": results.rates,
            "errors": results.errors,
            "skipped": results.skipped,
            "rows": aggregate(results, limits),
            "samples": results.samples,
        }
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / f"{stamp}.json", out_dir / f"{stamp}.md"
    js.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    text = markdown(doc)
    md.write_text(text)
    (out_dir / "latest.md").write_text(text)
    return js, md
