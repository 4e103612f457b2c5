"""Start a real etcd on free loopback ports for the metadata-store tests, with faults on demand.

``etcd_server(tmp_path)`` runs one single-member etcd (client and peer ports free on 127.0.0.1,
data under ``tmp_path``), waits until it answers ``/health``, yields an ``EtcdServer`` and kills it
on exit. ``pause()``/``resume()`` freeze it (SIGSTOP/SIGCONT: connections stay open, nothing
answers), ``stop()``/``start()`` restart it on the same ports and data.

The binary: ``$TIDELOG_ETCD`` if set, else ``etcd`` on PATH (Debian's ``etcd-server`` package:
``apt-get install -y etcd-server``; its service does not start without systemd), else the e2e cache
``/var/cache/tidelog-e2e/etcd-v3.6.14/bin/etcd``. None of them: the test fails (never skips).
Neighbours: ``storecontract`` (the suite these servers serve), ``tests/integration/test_etcd_store.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tidelogbroker import free_port

INSTALL_HINT = "apt-get update && apt-get install -y etcd-server"
E2E_CACHE_ETCD = Path("/var/cache/tidelog-e2e/etcd-v3.6.14/bin/etcd")


def etcd_binary() -> Path:
    """The etcd to run, or a failed test saying how to install one."""
    configured = os.environ.get("TIDELOG_ETCD")
    if configured:
        if not Path(configured).is_file():
            pytest.fail(f"TIDELOG_ETCD={configured} is not a file")
        return Path(configured)
    on_path = shutil.which("etcd")
    if on_path:
        return Path(on_path)
    if E2E_CACHE_ETCD.is_file():
        return E2E_CACHE_ETCD
    pytest.fail(f"no etcd binary: install it with `{INSTALL_HINT}` (or point TIDELOG_ETCD at one)")


class EtcdServer:
    """One single-member etcd process on 127.0.0.1 (stoppable, restartable, pausable)."""

    def __init__(self, base: Path, binary: Path | None = None) -> None:
        self.binary = binary or etcd_binary()
        self.data_dir = base / "etcd-data"
        self.log_path = base / "etcd.log"
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{self.client_port}"]

    def argv(self) -> list[str]:
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            str(self.binary),
            "--name=tidelog-test",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=tidelog-test={peer}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=tidelog-test",
        ]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, deadline_s: float = 30.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "etcd is already running"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.paused = False
        self.wait_healthy(deadline_s)

    def wait_healthy(self, deadline_s: float = 30.0) -> None:
        url = f"http://127.0.0.1:{self.client_port}/health"
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=1) as answer:
                if json.loads(answer.read()).get("health") == "true":
                    return
            time.sleep(0.05)
        raise TimeoutError(f"etcd did not become healthy within {deadline_s}s:\n{self.log_text()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.paused:
            self.proc.send_signal(signal.SIGCONT)
            self.paused = False
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def pause(self) -> None:
        assert self.proc is not None, "etcd was never started"
        assert self.proc.poll() is None, "etcd is not running"
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False


@contextlib.contextmanager
def etcd_server(tmp_path: Path) -> Iterator[EtcdServer]:
    """A running etcd under ``tmp_path``, killed on exit."""
    server = EtcdServer(tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.kill()
