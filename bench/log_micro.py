"""Log storage micro-benchmark: append and sendfile-read throughput beside the raw limits of the same
disk, measured in the same run.

* append: ``PartitionLog.append_as_leader`` of 16 KiB and 1 MiB v2 batches (validation, CRC-32C,
  offset patching, ``pwritev``, index upkeep) into a new log, page cache only (Kafka's default: no
  fsync per write) — against ``dd if=/dev/zero of=FILE bs=<same> conv=notrunc`` into a new file on the
  same filesystem;
* read: ``PartitionLog.read`` regions of up to 1 MiB sent with ``os.sendfile`` to a loopback TCP
  socket drained by another process — against ``dd if=FILE of=/dev/null bs=1M`` from the page cache,
  and a single raw ``sendfile`` of the whole file to the same receiver (the socket path's limit).

Each figure is the median of ``--repeats`` runs (min and max shown). Output: a markdown table on
stdout and ``bench/results/log-micro.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.files import FileRegion
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.protocol.batch import HEADER_SIZE, read_header
from tidelog.broker.protocol.records import Record, build_batch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GiB = 1 << 30


def make_batch(size: int) -> bytearray:
    """One uncompressed batch of about ``size`` bytes (1 KiB records), as a producer would send it."""
    record_size = 1000
    count = max(1, (size - 61) // (record_size + 12))
    records = [Record(i, 1_700_000_000_000, None, os.urandom(record_size)) for i in range(count)]
    return bytearray(build_batch(records))


def bench_append(work: Path, batch_size: int, total: int) -> float:
    """Seconds to append ``total`` bytes of ``batch_size`` batches to a new log."""
    batch = make_batch(batch_size)
    view = memoryview(batch)
    count = total // len(batch)
    config = LogConfig(segment_bytes=GiB, max_message_bytes=2 << 20)
    plog = PartitionLog.open(work / f"append-{batch_size}-0", config)
    start = time.perf_counter()
    for _ in range(count):
        plog.append_as_leader(view)
    elapsed = time.perf_counter() - start
    plog.close()
    return elapsed * total / (count * len(batch))


def bench_dd_write(work: Path, block: int, total: int) -> float:
    path = work / f"dd-{block}"
    path.unlink(missing_ok=True)
    start = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", f"bs={block}", f"count={total // block}", "conv=notrunc", "status=none"],
        check=True,
    )
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed


def bench_dd_read(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"], check=True)
    return time.perf_counter() - start


def _drain(port: int, expected: int, ready: Any) -> None:
    """The consumer side: accept one connection and read ``expected`` bytes into a reused buffer."""
    with socket.create_server(("127.0.0.1", port)) as server:
        ready.set()
        conn, _ = server.accept()
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        got = 0
        with conn:
            while got < expected:
                n = conn.recv_into(view)
                if not n:
                    break
                got += n
            conn.sendall(b"k")


def _with_receiver(expected: int, send: Callable[[socket.socket], None]) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_drain, args=(port, expected, ready))
    proc.start()
    ready.wait(10)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        start = time.perf_counter()
        send(sock)
        sock.recv(1)  # the receiver has everything
        elapsed = time.perf_counter() - start
    proc.join(10)
    return elapsed


def bench_log_sendfile(plog: PartitionLog, fetch_bytes: int) -> float:
    total = plog.size_bytes

    def send(sock: socket.socket) -> None:
        out = sock.fileno()
        offset = plog.log_start_offset
        end = plog.log_end_offset
        while offset < end:
            info = plog.read(offset, fetch_bytes)
            region = info.region
            assert region is not None
            try:
                pos, left = region.position, region.length
                while left:
                    n = os.sendfile(out, region.fd, pos, left)
                    pos += n
                    left -= n
            finally:
                region.release()
            offset = _next_offset(plog, region)

    return _with_receiver(total, send)


def _next_offset(plog: PartitionLog, region: FileRegion) -> int:
    """The offset after a region: the base offset of the batch that follows it on disk."""
    index = next(i for i, seg in enumerate(plog.segments) if seg.handle is region.handle)
    segment = plog.segments[index]
    end = region.position + region.length
    if end >= segment.size:
        return plog.segments[index + 1].base_offset if index + 1 < len(plog.segments) else plog.log_end_offset
    return read_header(segment.read_bytes(end, HEADER_SIZE)).base_offset


def bench_raw_sendfile(path: Path) -> float:
    size = path.stat().st_size

    def send(sock: socket.socket) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            pos = 0
            while pos < size:
                pos += os.sendfile(sock.fileno(), fd, pos, size - pos)
        finally:
            os.close(fd)

    return _with_receiver(size, send)


def summarize(samples: list[float], nbytes: int) -> dict[str, float]:
    rates = sorted(nbytes / s / 1e9 for s in samples)
    return {"median": statistics.median(rates), "min": rates[0], "max": rates[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mib", type=int, default=1024, help="bytes moved per run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    total = args.total_mib << 20
    (ROOT / ".build").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="log-micro-", dir=ROOT / ".build"))
    rows: list[dict[str, object]] = []
    try:
        for batch_size, label in ((16 << 10, "16 KiB"), (1 << 20, "1 MiB")):
            ours, raw = [], []
            for r in range(args.repeats):  # alternate A/B within the run
                shutil.rmtree(work / f"append-{batch_size}-0", ignore_errors=True)
                ours.append(bench_append(work, batch_size, total))
                raw.append(bench_dd_write(work, len(make_batch(batch_size)), total))
                del r
            rows.append(
                {
                    "metric": f"append, {label} batches",
                    "tidelog": summarize(ours, total),
                    "limit": summarize(raw, total),
                    "limit_cmd": f"dd if=/dev/zero bs={label} (new file)",
                }
            )
        plog = PartitionLog.open(work / f"append-{1 << 20}-0", LogConfig(segment_bytes=GiB, max_message_bytes=2 << 20))
        size = plog.size_bytes
        segment_path = plog.segments[0].handle.path
        bench_dd_read(segment_path)  # warm the page cache
        for fetch, label in ((1 << 20, "1 MiB fetches"),):
            ours, raw_read, raw_send = [], [], []
            for _ in range(args.repeats):
                ours.append(bench_log_sendfile(plog, fetch))
                raw_read.append(bench_dd_read(segment_path))
                raw_send.append(bench_raw_sendfile(segment_path))
            rows.append(
                {
                    "metric": f"read via sendfile to loopback, {label}",
                    "tidelog": summarize(ours, size),
                    "limit": summarize(raw_read, size),
                    "limit_cmd": "dd if=segment of=/dev/null bs=1M (cached)",
                    "socket_limit": summarize(raw_send, size),
                }
            )
        plog.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine = {
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "filesystem_of": str(ROOT / ".build"),
        "total_mib_per_run": args.total_mib,
        "repeats": args.repeats,
    }
    lines = [
        "| metric | Tidelog GB/s (min-max) | raw limit GB/s (min-max) | ratio | limit measured with |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        t, lim = row["tidelog"], row["limit"]
        assert isinstance(t, dict)
        assert isinstance(lim, dict)
        lines.append(
            f"| {row['metric']} | {t['median']:.2f} ({t['min']:.2f}-{t['max']:.2f}) | "
            f"{lim['median']:.2f} ({lim['min']:.2f}-{lim['max']:.2f}) | {t['median'] / lim['median']:.2f}x | "
            f"{row['limit_cmd']} |"
        )
        if "socket_limit" in row:
            s = row["socket_limit"]
            assert isinstance(s, dict)
            lines.append(
                f"| (socket path limit: one raw sendfile of the file) | | {s['median']:.2f} "
                f"({s['min']:.2f}-{s['max']:.2f}) | {t['median'] / s['median']:.2f}x | os.sendfile whole file |"
            )
    table = "\n".join(lines)
    print(table)
    print(f"\nmachine: {machine}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "log-micro.md").write_text(table + f"\n\nmachine: {machine}\n")
    (RESULTS / "log-micro.json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=2))


if __name__ == "__main__":
    main()
