"""Log storage micro-benchmark: append and sendfile-read throughput beside the raw limits of the same
disk, measured in the same run.

* append: ``PartitionLog.append_as_leader`` of 16 KiB and 1 MiB v2 batches (validation, CRC-32C,
  offset patching, one ``pwrite`` per batch into the page cache, index upkeep) into a new log, no
  fsync (Kafka's default) — against ``dd if=/dev/zero of=FILE bs=<same> conv=notrunc`` into a new
  file on the same filesystem (the issue's raw limit), and against a Python ``pwrite`` loop writing
  the same blocks with blocks reserved ahead as the log reserves them (``FileIO.preallocate``): the
  floor of the log's own write pattern, so the log's overhead and its preallocation gain show apart;
* read: ``PartitionLog.read`` regions of up to 1 MiB and 8 MiB (batch-aligned) sent with
  ``os.sendfile`` to a loopback TCP socket — against ``dd if=FILE of=/dev/null bs=1M`` from the page
  cache (the raw limit) and one raw ``sendfile`` of the whole file to the same receiver (the socket
  path's limit). The receiver, another process, discards what it gets with ``splice`` to
  /dev/null (no copy to user space: the consumer's memcpy does not bound the measurement); a row
  with a copying receiver (``recv_into``) is kept for comparison.

Systems alternate within each repeat; each figure is the median of ``--repeats`` runs (min and max
shown), every ratio is printed. Output: a markdown table on stdout and
``bench/results/log-micro.{md,json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
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
from tidelog.broker.log.io import FileIO
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.protocol.records import Record, build_batch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GiB = 1 << 30
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_DISCARD = "receiver discards (splice to /dev/null)"


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
    directory = work / f"append-{batch_size}-0"
    shutil.rmtree(directory, ignore_errors=True)  # a new log each run; the last one stays for the reads
    plog = PartitionLog.open(directory, config)
    start = time.perf_counter()
    for _ in range(count):
        plog.append_as_leader(view)
    elapsed = time.perf_counter() - start
    plog.close()
    return elapsed * total / (count * len(batch))


def bench_dd_write(work: Path, block: int, total: int) -> float:
    """Seconds for dd to write ``total`` bytes in ``block``-byte writes to a new file (scaled like
    ``bench_append`` to exactly ``total`` bytes)."""
    path = work / f"dd-{block}"
    path.unlink(missing_ok=True)
    count = total // block
    start = time.perf_counter()
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={path}", f"bs={block}", f"count={count}", "conv=notrunc", "status=none"],
        check=True,
    )
    elapsed = time.perf_counter() - start
    path.unlink()
    return elapsed * total / (count * block)


def bench_pwrite_floor(work: Path, batch_size: int, total: int) -> float:
    """Seconds for a bare ``pwrite`` loop of the same batch into a new file, reserving blocks ahead
    as the log does (``FileIO.preallocate``): the kernel's share of the log's append."""
    batch = make_batch(batch_size)
    size = len(batch)
    count = total // size
    io = FileIO()
    chunk = io.preallocate_bytes
    path = work / f"floor-{batch_size}"
    fd = io.open(path, create=True)
    reserved = position = 0
    start = time.perf_counter()
    for _ in range(count):
        if position + size > reserved:  # LogSegment._reserve's policy
            ahead = min(max(chunk, position >> 4), chunk << 4)
            ok = ahead > 0 and io.preallocate(fd, position, size + ahead)
            reserved = position + size + ahead if ok else 1 << 62
        os.pwrite(fd, batch, position)
        position += size
    elapsed = time.perf_counter() - start
    os.close(fd)
    path.unlink()
    return elapsed * total / (count * size)


def bench_dd_read(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"], check=True)
    return time.perf_counter() - start


def _drain(port: int, expected: int, copy: bool, ready: Any) -> None:
    """The consumer side: accept one connection and take ``expected`` bytes, either discarding them
    in the kernel (``splice`` to /dev/null through a pipe: no copy to user space) or copying them
    into a reused buffer (``recv_into``), then answer one byte."""
    with socket.create_server(("127.0.0.1", port)) as server:
        ready.set()
        conn, _ = server.accept()
        got = 0
        with conn:
            if copy or not hasattr(os, "splice"):
                view = memoryview(bytearray(4 << 20))
                flags = 0 if copy else socket.MSG_TRUNC  # MSG_TRUNC: TCP discards, copies nothing
                while got < expected:
                    n = conn.recv_into(view, len(view), flags)
                    if not n:
                        break
                    got += n
            else:
                pipe_out, pipe_in = os.pipe()
                null = os.open(os.devnull, os.O_WRONLY)
                with contextlib.suppress(OSError):
                    fcntl.fcntl(pipe_in, _F_SETPIPE_SZ, 1 << 20)
                while got < expected:
                    n = os.splice(conn.fileno(), pipe_in, 1 << 20)
                    if not n:
                        break
                    moved = 0
                    while moved < n:
                        moved += os.splice(pipe_out, null, n - moved)
                    got += n
                for fd in (pipe_out, pipe_in, null):
                    os.close(fd)
            conn.sendall(b"k")


def _with_receiver(expected: int, send: Callable[[socket.socket], None], *, copy: bool = False) -> float:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=_drain, args=(port, expected, copy, ready))
    proc.start()
    ready.wait(10)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)  # the kernel doubles it
        start = time.perf_counter()
        send(sock)
        sock.recv(1)  # the receiver has everything
        elapsed = time.perf_counter() - start
    proc.join(10)
    return elapsed


def bench_log_sendfile(plog: PartitionLog, fetch_bytes: int, *, copy: bool = False) -> float:
    """Seconds to send the whole log as consecutive ``read`` regions (whole batches, at most
    ``fetch_bytes``), each with ``sendfile`` from the segment's descriptor, as a Fetch would."""
    total = plog.size_bytes

    def send(sock: socket.socket) -> None:
        out = sock.fileno()
        offset = plog.log_start_offset
        end = plog.log_end_offset
        while offset < end:
            region = plog.read(offset, fetch_bytes).region
            assert region is not None
            try:
                pos, left = region.position, region.length
                while left:
                    n = os.sendfile(out, region.fd, pos, left)
                    pos += n
                    left -= n
            finally:
                region.release()
            offset = region.next_offset

    return _with_receiver(total, send, copy=copy)


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


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['median']:.2f} ({stats['min']:.2f}-{stats['max']:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-mib", type=int, default=1024, help="bytes moved per run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    total = args.total_mib << 20
    (ROOT / ".build").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="log-micro-", dir=ROOT / ".build"))
    rows: list[dict[str, Any]] = []
    config = LogConfig(segment_bytes=GiB, max_message_bytes=2 << 20)
    try:
        for batch_size, label in ((16 << 10, "16 KiB"), (1 << 20, "1 MiB")):
            block = len(make_batch(batch_size))
            ours: list[float] = []
            raw: list[float] = []
            floor: list[float] = []
            systems: list[tuple[list[float], Callable[[], float]]] = [
                (ours, functools.partial(bench_append, work, batch_size, total)),
                (raw, functools.partial(bench_dd_write, work, block, total)),
                (floor, functools.partial(bench_pwrite_floor, work, batch_size, total)),
            ]
            for r in range(args.repeats):  # alternate the systems, each repeat starting with another
                for times, run in systems[r % 3 :] + systems[: r % 3]:
                    times.append(run())
            rows.append(
                {
                    "metric": f"append, {label} batches",
                    "tidelog": summarize(ours, total),
                    "limit": summarize(raw, total),
                    "limit_cmd": "dd if=/dev/zero bs=<batch size> of=<new file> (page cache, no direct I/O)",
                    "second": summarize(floor, total),
                    "second_cmd": "Python pwrite loop of the same batches, blocks reserved ahead as the log does",
                }
            )
        plog = PartitionLog.open(work / f"append-{1 << 20}-0", config)
        size = plog.size_bytes
        segment_path = plog.segments[0].handle.path
        bench_dd_read(segment_path)  # warm the page cache
        cases = (
            (f"read via sendfile to loopback, 1 MiB fetches, {_DISCARD}", 1 << 20, False),
            (f"read via sendfile to loopback, 8 MiB fetches, {_DISCARD}", 8 << 20, False),
            ("read via sendfile to loopback, 1 MiB fetches, receiver copies (recv_into)", 1 << 20, True),
        )
        samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        raw_read, raw_send = [], []
        for _ in range(args.repeats):
            for name, fetch, copy in cases:
                samples[name].append(bench_log_sendfile(plog, fetch, copy=copy))
            raw_read.append(bench_dd_read(segment_path))
            raw_send.append(bench_raw_sendfile(segment_path))
        for name, _, _ in cases:
            rows.append(
                {
                    "metric": name,
                    "tidelog": summarize(samples[name], size),
                    "limit": summarize(raw_read, size),
                    "limit_cmd": "dd if=<segment> of=/dev/null bs=1M (page cache)",
                    "second": summarize(raw_send, size),
                    "second_cmd": "one raw sendfile of the whole segment to the same socket set-up and receiver",
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
        "| metric | Tidelog GB/s (min-max) | raw limit GB/s (min-max) | ratio"
        " | same-path limit GB/s (min-max) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    legend: dict[str, None] = {}
    for row in rows:
        t, lim, sec = row["tidelog"], row["limit"], row["second"]
        lines.append(
            f"| {row['metric']} | {_cell(t)} | {_cell(lim)} | {t['median'] / lim['median']:.2f}x | "
            f"{_cell(sec)} | {t['median'] / sec['median']:.2f}x |"
        )
        legend[
            f"{row['metric'].split(',')[0]}: raw limit = {row['limit_cmd']}; same-path limit = {row['second_cmd']}"
        ] = None
    lines += ["", *(f"- {line}" for line in legend)]
    table = "\n".join(lines)
    print(table)
    print(f"\nmachine: {machine}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "log-micro.md").write_text(table + f"\n\nmachine: {machine}\n")
    (RESULTS / "log-micro.json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=2))


if __name__ == "__main__":
    main()
