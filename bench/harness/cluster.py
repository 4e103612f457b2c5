"""Three-broker Apache Kafka (issue 8: "single broker and three brokers"), selected as ``kafka3``.

Three KRaft nodes, each a combined broker+controller, on loopback ports, with a static quorum
``controller.quorum.voters=1@...,2@...,3@...``; every node is formatted by ``StorageTool`` with the
same cluster id. Each JVM gets Kafka's shipped flags and a 1 GiB heap (3 GiB of the machine's 24):
the same per-node heap as the single broker. All three share the broker core (``taskset -c 0``), so
the cluster has the single broker's CPU budget and pays for replication out of it. Internal topics
use RF=3 / min.insync.replicas=2, as a production cluster would. ``broker.session.timeout.ms`` is
``SESSION_TIMEOUT_MS`` (6 s, Kafka's default is 9 s): the value tidelog3 gets as
``metadata.session.timeout.ms``, so leader failover is compared at equal liveness timeouts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness import java
from harness.generators import rdkgen_cmd
from harness.systems import (
    SEGMENT_BYTES,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    KafkaSystem,
    _kafka_cluster_id,
    free_port,
    pin,
)

NODES = 3
# Broker liveness timeout, the same on both systems (tidelog3: metadata.session.timeout.ms).
SESSION_TIMEOUT_MS = 6000


class KafkaCluster(KafkaSystem):
    """Apache Kafka 4.1.1, three KRaft broker+controller nodes, 1 GiB heap each, RF up to 3."""

    name = "kafka3"
    replicas = NODES

    def __init__(self, data_root: Path, cpu: str | None) -> None:
        super().__init__(data_root, cpu)
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def pid(self) -> int:
        assert self.procs, "cluster not started"
        return self.procs[0].pid

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def kill_node(self, node_id: int) -> None:
        """SIGKILL node ``node_id`` (1-based), as a crash would."""
        proc = self.procs[node_id - 1]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def _node_properties(self, node: int, data_dir: Path, voters: str, ctl_port: int) -> str:
        port = self.ports[node - 1]
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node}",
                f"controller.quorum.voters={voters}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data_dir}",
                f"offsets.topic.replication.factor={NODES}",
                f"transaction.state.log.replication.factor={NODES}",
                "transaction.state.log.min.isr=2",
                "group.initial.rebalance.delay.ms=0",
                "log.retention.bytes=8589934592",
                f"log.segment.bytes={SEGMENT_BYTES}",
                "num.partitions=1",
                f"broker.session.timeout.ms={SESSION_TIMEOUT_MS}",
                "",
            ]
        )

    def start(self) -> None:
        """Format and launch three nodes, wait until each answers metadata listing all three brokers."""
        self.stop()
        shutil.rmtree(self.data_root, ignore_errors=True)
        if self._libs is None:
            self.check()
        assert self._libs is not None
        self.ports = [free_port() for _ in range(NODES)]
        ctl = [free_port() for _ in range(NODES)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, c in enumerate(ctl))
        cluster_id = _kafka_cluster_id()
        t0 = time.monotonic()
        for node in range(1, NODES + 1):
            root = self.data_root / f"node{node}"
            (root / "data").mkdir(parents=True)
            props = root / "server.properties"
            props.write_text(self._node_properties(node, root / "data", voters, ctl[node - 1]))
            fmt = subprocess.run(
                java.tool_cmd(self._libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise RuntimeError(f"kafka3 node {node}: StorageTool format failed:\n{fmt.stdout}{fmt.stderr}")
            with (root / "broker.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [*pin(self.cpu), *java.broker_cmd(self._libs, props)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        self.proc = self.procs[0]  # the runner's liveness check looks at one process
        self._wait_ready(t0)
        self.startup_s = time.monotonic() - t0

    def _wait_ready(self, t0: float) -> None:
        pending = list(self.ports)
        while pending:
            dead = [p.returncode for p in self.procs if p.poll() is not None]
            if dead:
                self.stop()
                raise RuntimeError(f"kafka3: a node exited with {dead}:\n{self.log_tail()}")
            if time.monotonic() - t0 > START_TIMEOUT_S:
                self.stop()
                raise RuntimeError(f"kafka3 not ready after {START_TIMEOUT_S}s:\n{self.log_tail()}")
            probe = subprocess.run(
                rdkgen_cmd("ready", "--bootstrap", f"127.0.0.1:{pending[0]}", "--timeout", "2"),
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                pending.pop(0)
            else:
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM every node's process group, SIGKILL after a deadline."""
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
