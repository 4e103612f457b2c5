"""Start a real Tidelog broker as a subprocess on free loopback ports (the way users run it)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TIDELOG = Path(sys.executable).with_name("tidelog")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free loopback port below the ephemeral range: a port the OS would hand to an outgoing
    connection (a client's, etcd's) could be taken between this call and the broker's bind (seen in
    CI: "address already in use" on a metrics port). Never the same port twice in one test run."""
    top = min(_ephemeral_start(), 65536) - 1
    for _ in range(500):
        port = random.randint(max(1025, top - 12000), top)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:  # a crowded range: let the OS choose
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, deadline_s: float = 30.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"broker did not listen on {port} within {deadline_s}s:\n{log.read_text()}")


@dataclass
class RunningBroker:
    port: int
    metrics_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    extra: list[str]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def restart(self) -> None:
        self.proc = _spawn(self.port, self.metrics_port, self.data_dir, self.log_path, self.extra)
        wait_for_port(self.port, self.proc, self.log_path)


def _spawn(port: int, metrics_port: int, data_dir: Path, log_path: Path, extra: list[str]) -> subprocess.Popen[bytes]:
    cmd = [
        str(TIDELOG),
        "broker",
        "--data-dir",
        str(data_dir),
        "--listen",
        f"127.0.0.1:{port}",
        "--metrics-port",
        str(metrics_port),
        *extra,
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log_path.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


@contextlib.contextmanager
def tidelog_broker(tmp: Path, *extra: str, port: int | None = None) -> Iterator[RunningBroker]:
    """A broker on free ports (or ``port``) with its data under ``tmp``; its log is printed if the body fails."""
    port, metrics_port = port or free_port(), free_port()
    data_dir = tmp / "data"
    log_path = tmp / "broker.log"
    proc = _spawn(port, metrics_port, data_dir, log_path, list(extra))
    broker = RunningBroker(port, metrics_port, data_dir, log_path, proc, list(extra))
    try:
        wait_for_port(port, proc, log_path)
        yield broker
    except BaseException:
        print(f"----- broker log ({log_path}) -----\n{broker.log_text()}", file=sys.stderr)
        raise
    finally:
        broker.stop()
