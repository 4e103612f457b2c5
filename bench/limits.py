"""Physical limits of this machine, measured in the same run as the brokers.

Loopback TCP bandwidth (iperf3: server on the broker core, client on the generator core, and one
unpinned), loopback round-trip time (100 B request / 32 B answer, Python, cross-core), sequential
write/read bandwidth of the data directory's disk (fio, 1 MiB blocks: new and rewritten page cache,
cold buffered and warm reads, O_DIRECT; 64 KiB writes each followed by fdatasync) and memory copy
bandwidth (Python bytearray slice assignment, i.e. memcpy). Used by ``run.py`` (the
``limit`` column of the report); runnable alone: ``python bench/limits.py --size quick DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SIZES: dict[str, dict[str, int]] = {  # file MiB, iperf3 seconds, RTT round trips, memcpy MiB
    "quick": {"file_mib": 256, "iperf_s": 2, "rtt_n": 5000, "copy_mib": 256},
    "default": {"file_mib": 1024, "iperf_s": 5, "rtt_n": 20000, "copy_mib": 512},
    "full": {"file_mib": 2048, "iperf_s": 10, "rtt_n": 50000, "copy_mib": 1024},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu else []


def iperf3(seconds: int, server_cpu: str | None, client_cpu: str | None) -> float:
    """Loopback TCP bandwidth in MB/s (one stream, received side)."""
    port = _free_port()
    srv = subprocess.Popen(
        [*_pin(server_cpu), "iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # No probe connection: iperf3 -s -1 would spend its one test on it. Retry until it listens.
        for _ in range(20):
            out = subprocess.run(
                [*_pin(client_cpu), "iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
                capture_output=True,
                text=True,
                check=False,
                timeout=seconds + 30,
            )
            data = json.loads(out.stdout or "{}")
            if out.returncode == 0 and "sum_received" in data.get("end", {}):
                return float(data["end"]["sum_received"]["bits_per_second"]) / 8 / 1e6
            time.sleep(0.1)
        raise RuntimeError(f"iperf3 failed: {data.get('error', out.stderr)}")
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait()


_ECHO = (
    "import socket,sys\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('127.0.0.1',int(sys.argv[1])));s.listen(1);print('up',flush=True)\n"
    "c,_=s.accept();c.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1);a=b'x'*32\n"
    "while True:\n"
    "    d=c.recv(100,socket.MSG_WAITALL)\n"
    "    if len(d)<100: break\n"
    "    c.sendall(a)\n"
)


def rtt(n: int, server_cpu: str | None, client_cpu: str | None) -> dict[str, float]:
    """Loopback round trip, 100 B out / 32 B back, Python on both ends, in microseconds."""
    port = _free_port()
    srv = subprocess.Popen(
        [*_pin(server_cpu), sys.executable, "-I", "-c", _ECHO, str(port)], stdout=subprocess.PIPE, text=True
    )
    old = os.sched_getaffinity(0)
    try:
        assert srv.stdout is not None
        srv.stdout.readline()
        if client_cpu:
            os.sched_setaffinity(0, {int(client_cpu)})
        c = socket.create_connection(("127.0.0.1", port))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg, lat = b"y" * 100, []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            c.sendall(msg)
            c.recv(32, socket.MSG_WAITALL)
            lat.append(time.perf_counter_ns() - t0)
        c.close()
    finally:
        os.sched_setaffinity(0, old)
        srv.wait(timeout=10)
    lat.sort()
    return {"p50_us": lat[len(lat) // 2] / 1e3, "p99_us": lat[int(len(lat) * 0.99)] / 1e3}


def _fio(path: Path, cpu: str | None, **opts: object) -> float:
    args = [f"--{k.replace('_', '-')}={v}" for k, v in opts.items()]
    out = subprocess.run(
        [*_pin(cpu), "fio", "--name=limit", f"--filename={path}", "--output-format=json", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    job = json.loads(out.stdout[out.stdout.index("{") :])["jobs"][0]
    side = "write" if "write" in str(opts.get("rw")) else "read"
    return float(job[side]["bw_bytes"]) / 1e6


def disk(data_dir: Path, file_mib: int, cpu: str | None) -> dict[str, float]:
    """Sequential bandwidth (MB/s) of the filesystem holding ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    f = data_dir / "limits-fio.tmp"
    size = f"{file_mib}M"
    try:
        buffered = {"bs": "1M", "size": size, "ioengine": "psync", "direct": 0}
        # fio drops the file's page cache before each job unless invalidate=0: that gives the
        # cold buffered read (readahead from disk, what a broker's cold fetch does); the warm read
        # runs twice with invalidate=0 and keeps the second figure.
        res = {
            # New page cache pays the balloon's first touch (shared/notes/performance.md); the
            # rewrite of the same, still cached file is the upper bound a broker's append can see.
            "pagecache_write_new_MBps": _fio(f, cpu, rw="write", **buffered),
            "pagecache_write_MBps": _fio(f, cpu, rw="write", **buffered),
            "buffered_read_cold_MBps": _fio(f, cpu, rw="read", invalidate=1, **buffered),
            "pagecache_read_MBps": [_fio(f, cpu, rw="read", invalidate=0, **buffered) for _ in range(2)][-1],
            "direct_write_MBps": _fio(f, cpu, rw="write", bs="1M", size=size, ioengine="libaio", iodepth=4, direct=1),
            "direct_read_MBps": _fio(f, cpu, rw="read", bs="1M", size=size, ioengine="libaio", iodepth=4, direct=1),
            "fdatasync_64k_write_MBps": _fio(
                f, cpu, rw="write", bs="64k", size=f"{max(16, file_mib // 8)}M", ioengine="psync", direct=0, fdatasync=1
            ),
        }
    finally:
        f.unlink(missing_ok=True)
    return res


def memcpy(mib: int) -> float:
    """Memory copy bandwidth in GB/s (bytes copied per second, buffers pre-touched)."""
    n = mib << 20
    src, dst = bytearray(b"\x5a" * n), bytearray(n)
    dst[:] = src  # touch both
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        dst[:] = src
        best = max(best, n / (time.perf_counter() - t0) / 1e9)
    return best


def measure(size: str, data_dir: Path, broker_cpu: str | None = "0", gen_cpu: str | None = "1") -> dict[str, Any]:
    """Every limit, with the probe sizes of ``size`` (quick | default | full)."""
    p = SIZES[size]
    out: dict[str, Any] = {"size": size, "data_dir": str(data_dir), "errors": []}
    missing = [t for t in ("iperf3", "fio") if shutil.which(t) is None]
    if missing:
        out["errors"].append(f"missing: {' '.join(missing)} (apt-get install iperf3 fio)")
    if "iperf3" not in missing:
        out["loopback_MBps_cross_core"] = iperf3(p["iperf_s"], broker_cpu, gen_cpu)
        out["loopback_MBps_unpinned"] = iperf3(p["iperf_s"], None, None)
    out["rtt_us_cross_core"] = rtt(p["rtt_n"], broker_cpu, gen_cpu)
    if "fio" not in missing:
        out.update(disk(data_dir, p["file_mib"], broker_cpu))
    out["memcpy_GBps"] = memcpy(p["copy_mib"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--size", choices=sorted(SIZES), default="quick")
    a = ap.parse_args()
    print(json.dumps(measure(a.size, a.data_dir), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
