"""Three-broker Tidelog, selected as ``tidelog3``: the counterpart of ``kafka3`` (harness/cluster.py).

One single-member etcd (the metadata store, like the KRaft quorum inside Kafka's nodes) and three
``tidelog broker --node-id N --metadata etcd://127.0.0.1:P/bench`` processes on loopback ports, each
with its own data directory. etcd and the three brokers all share the broker core (``taskset -c 0``),
as kafka3's three JVMs do, so the cluster has the single broker's CPU budget; CPU and RSS are summed
over the four processes (etcd included: Kafka's controllers run inside its JVMs).

Equivalent timeouts: ``metadata.session.timeout.ms`` (the etcd lease of a broker, kept alive every
third of it) is set to ``SESSION_TIMEOUT_MS``, the value kafka3 gets as ``broker.session.timeout.ms``
(its heartbeat stays at the default 2 s, a third of 6 s). ``replica.lag.time.max.ms`` is left at both
systems' default (30 s).

The etcd binary: ``$TIDELOG_ETCD``, else ``etcd`` on PATH (Debian's ``etcd-server``).
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
from pathlib import Path

from harness.generators import rdkgen_cmd
from harness.systems import (
    SEGMENT_BYTES,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    TIDELOG_ENV,
    SystemUnavailableError,
    TidelogSystem,
    free_port,
    pin,
    tidelog_command,
)

NODES = 3
# Broker liveness timeout, the same on both systems (kafka3: broker.session.timeout.ms).
SESSION_TIMEOUT_MS = 6000


def etcd_binary() -> str | None:
    """``$TIDELOG_ETCD`` or ``etcd`` on PATH, None when neither exists."""
    configured = os.environ.get("TIDELOG_ETCD")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("etcd")


class TidelogCluster(TidelogSystem):
    """Tidelog, three brokers sharing one etcd, RF up to 3 (all on the broker core)."""

    name = "tidelog3"
    replicas = NODES

    def __init__(self, data_root: Path, cpu: str | None) -> None:
        super().__init__(data_root, cpu)
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.etcd: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def pid(self) -> int:
        assert self.procs, "cluster not started"
        return self.procs[0].pid

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs] + ([self.etcd.pid] if self.etcd else [])

    def check(self) -> None:
        super().check()
        if etcd_binary() is None:
            raise SystemUnavailableError(
                "tidelog3: no etcd binary (apt-get install -y etcd-server, or set TIDELOG_ETCD)"
            )

    def kill_node(self, node_id: int) -> None:
        """SIGKILL broker ``node_id`` (1-based), as a crash would."""
        proc = self.procs[node_id - 1]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def _start_etcd(self) -> int:
        binary = etcd_binary()
        assert binary is not None
        root = self.data_root / "etcd"
        root.mkdir(parents=True)
        client, peer = free_port(), free_port()
        c_url, p_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        argv = [
            binary,
            "--name=bench",
            f"--data-dir={root / 'data'}",
            f"--listen-client-urls={c_url}",
            f"--advertise-client-urls={c_url}",
            f"--listen-peer-urls={p_url}",
            f"--initial-advertise-peer-urls={p_url}",
            f"--initial-cluster=bench={p_url}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=tidelog-bench",
        ]
        with (root / "etcd.log").open("wb") as log:
            self.etcd = subprocess.Popen(
                [*pin(self.cpu), *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.etcd.poll() is not None:
                raise RuntimeError(f"tidelog3: etcd exited with {self.etcd.returncode}")
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(f"{c_url}/health", timeout=1) as answer,  # noqa: S310 - http://127.0.0.1
            ):
                if json.loads(answer.read()).get("health") == "true":
                    return client
            time.sleep(0.05)
        raise RuntimeError("tidelog3: etcd not healthy after 30 s")

    def start(self) -> None:
        """etcd, then three brokers; ready once each answers Metadata listing all three brokers."""
        self.stop()
        shutil.rmtree(self.data_root, ignore_errors=True)
        self.data_root.mkdir(parents=True)
        base = self._base_cmd()
        t0 = time.monotonic()
        try:
            etcd_port = self._start_etcd()
        except Exception:
            self.stop()
            raise
        self.ports = [free_port() for _ in range(NODES)]
        env = dict(os.environ, **TIDELOG_ENV)
        for node in range(1, NODES + 1):
            root = self.data_root / f"node{node}"
            (root / "data").mkdir(parents=True)
            cmd = [
                *base,
                "broker",
                "--node-id",
                str(node),
                "--metadata",
                f"etcd://127.0.0.1:{etcd_port}/bench",
                "--data-dir",
                str(root / "data"),
                "--listen",
                f"127.0.0.1:{self.ports[node - 1]}",
                "--metrics-port",
                "0",
                "--set",
                f"log.segment.bytes={SEGMENT_BYTES}",
                "--set",
                "group.initial.rebalance.delay.ms=0",
                "--set",
                f"metadata.session.timeout.ms={SESSION_TIMEOUT_MS}",
            ]
            with (root / "broker.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [*pin(self.cpu), *cmd], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                    )
                )
        self.proc = self.procs[0]  # the runner's liveness check looks at one process
        self._wait_ready(t0)
        self.startup_s = time.monotonic() - t0

    def _base_cmd(self) -> list[str]:
        base = tidelog_command()
        if base is None:
            self.check()
        assert base is not None
        return base

    def _wait_ready(self, t0: float) -> None:
        pending = list(self.ports)
        while pending:
            dead = [p.returncode for p in self.procs if p.poll() is not None]
            if dead:
                self.stop()
                raise RuntimeError(f"tidelog3: a broker exited with {dead}:\n{self.log_tail()}")
            if time.monotonic() - t0 > START_TIMEOUT_S:
                self.stop()
                raise RuntimeError(f"tidelog3 not ready after {START_TIMEOUT_S}s:\n{self.log_tail()}")
            probe = subprocess.run(
                rdkgen_cmd("ready", "--bootstrap", f"127.0.0.1:{pending[0]}", "--timeout", "2", "--min-brokers", "3"),
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                pending.pop(0)
            else:
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM the brokers (then SIGKILL after a deadline), then etcd."""
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs = []
        self.proc = None
        if self.etcd is not None:
            if self.etcd.poll() is None:
                os.killpg(self.etcd.pid, signal.SIGTERM)
                try:
                    self.etcd.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.etcd.pid, signal.SIGKILL)
                    self.etcd.wait()
            self.etcd = None

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for node in range(1, NODES + 1):
            path = self.data_root / f"node{node}" / "broker.log"
            try:
                tail = path.read_text(errors="replace").splitlines()[-(lines // NODES or 1) :]
            except OSError:
                tail = ["(no log)"]
            out += [f"-- node {node}:", *tail]
        return "\n".join(out)

    def data_dir(self) -> Path:
        return self.data_root
