"""The systems under test behind one interface: start a fresh broker, expose its pid, stop it.

``KafkaSystem`` runs Apache Kafka in KRaft mode (one combined broker+controller) from the jars that
``java`` fetches; ``TidelogSystem`` runs ``tidelog broker``. Both get a wiped data directory on the
same filesystem, are pinned with ``taskset`` and are ready once a metadata request succeeds
(``rdkgen ready``). ``runner`` drives them; ``procstat`` measures them.
"""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from harness import java
from harness.generators import rdkgen_cmd

# One segment size for both systems (Kafka's default), given to Kafka as log.segment.bytes and to
# every topic either system creates as the topic config segment.bytes.
SEGMENT_BYTES = 1 << 30
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


class SystemUnavailableError(RuntimeError):
    """The system cannot be run on this machine (missing command, failed fetch)."""


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: str | None) -> list[str]:
    """``taskset -c CPU`` prefix, or nothing when unpinned."""
    return ["taskset", "-c", cpu] if cpu else []


class System(ABC):
    """A broker the harness can start fresh, measure and stop."""

    name: str = "?"
    replicas: int = 1  # brokers: the largest replication factor this system can run
    no_replication_note: str = "single broker: RF=1 only"

    def __init__(self, data_root: Path, cpu: str | None) -> None:
        self.data_root = data_root / self.name
        self.cpu = cpu
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.startup_s = 0.0
        self.log_path = self.data_root / "broker.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "system not started"
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        """Every broker process (roots of the trees ``procstat`` measures)."""
        return [self.pid]

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`SystemUnavailableError` if this system cannot run here."""

    @abstractmethod
    def _command(self, data_dir: Path) -> tuple[list[str], dict[str, str]]:
        """Prepare ``data_dir`` and return the broker's command line and environment."""

    def start(self) -> None:
        """Wipe the data directory, launch the broker pinned, wait until it answers metadata."""
        self.stop()
        shutil.rmtree(self.data_root, ignore_errors=True)
        data_dir = self.data_root / "data"
        data_dir.mkdir(parents=True)
        self.port = free_port()
        cmd, env = self._command(data_dir)
        t0 = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*pin(self.cpu), *cmd],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = t0 + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {START_TIMEOUT_S}s:\n{self.log_tail()}")
            probe = subprocess.run(
                rdkgen_cmd("ready", "--bootstrap", self.bootstrap, "--timeout", "2"),
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                break
            time.sleep(0.1)
        self.startup_s = time.monotonic() - t0

    def stop(self) -> None:
        """SIGTERM the broker's process group, SIGKILL after a deadline."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def data_dir(self) -> Path:
        return self.data_root / "data"


def _kafka_cluster_id() -> str:
    while True:
        s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not s.startswith("-"):
            return s


class KafkaSystem(System):
    """Apache Kafka 4.1.1, KRaft, one node as broker and controller, 1 GiB heap, RF=1."""

    name = "kafka"

    def __init__(self, data_root: Path, cpu: str | None) -> None:
        super().__init__(data_root, cpu)
        self._libs: Path | None = None

    def check(self) -> None:
        if shutil.which("java") is None:
            raise SystemUnavailableError("kafka: `java` not on PATH (Java 17+ needed)")
        try:
            self._libs = java.libs_dir()
        except RuntimeError as e:
            raise SystemUnavailableError(f"kafka: {e}") from e

    def _properties(self, data_dir: Path, controller_port: int) -> str:
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data_dir}",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "log.retention.bytes=8589934592",
                f"log.segment.bytes={SEGMENT_BYTES}",
                "num.partitions=1",
                "",
            ]
        )

    def _command(self, data_dir: Path) -> tuple[list[str], dict[str, str]]:
        if self._libs is None:
            self.check()
        assert self._libs is not None
        props = self.data_root / "server.properties"
        props.write_text(self._properties(data_dir, free_port()))
        fmt = subprocess.run(
            java.tool_cmd(self._libs, "kafka.tools.StorageTool", "format", "-t", _kafka_cluster_id(), "-c", str(props)),
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise RuntimeError(f"kafka StorageTool format failed:\n{fmt.stdout}{fmt.stderr}")
        return java.broker_cmd(self._libs, props), dict(os.environ)


# Launch settings from shared/notes/performance.md: large mallocs off mmap, no eager trimming.
TIDELOG_ENV = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "1073741824"}


def tidelog_command() -> list[str] | None:
    """``$TIDELOG_CMD``, else ``tidelog`` on PATH, else beside this interpreter; None if missing."""
    if env := os.environ.get("TIDELOG_CMD"):
        return shlex.split(env)
    found = shutil.which("tidelog") or shutil.which("tidelog", path=str(Path(sys.executable).parent))
    return [found] if found else None


class TidelogSystem(System):
    """Tidelog's standalone broker: ``tidelog broker --data-dir DIR --listen 127.0.0.1:PORT``."""

    name = "tidelog"
    no_replication_note = "single broker: RF=1 only (three brokers: --systems tidelog3)"

    def check(self) -> None:
        base = tidelog_command()
        if base is None:
            raise SystemUnavailableError(
                "tidelog: the `tidelog` command was not found (not on PATH, not beside "
                f"{sys.executable}, TIDELOG_CMD unset). Install the project (pip install -e .) "
                "or run with --systems kafka."
            )
        probe = subprocess.run([*base, "broker", "--help"], capture_output=True, text=True, timeout=60, check=False)
        if probe.returncode != 0:
            err = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or ["?"]
            raise SystemUnavailableError(
                f"tidelog: `{shlex.join(base)} broker --help` exited {probe.returncode} "
                f"({err[0]}): the broker command does not exist yet; run with --systems kafka."
            )

    def _command(self, data_dir: Path) -> tuple[list[str], dict[str, str]]:
        base = tidelog_command()
        if base is None:
            self.check()
        assert base is not None
        cmd = [*base, "broker", "--data-dir", str(data_dir), "--listen", self.bootstrap]
        # No metrics listener (its default port would clash with other brokers on the machine);
        # the same default segment size as Kafka's log.segment.bytes.
        cmd += ["--metrics-port", "0", "--set", f"log.segment.bytes={SEGMENT_BYTES}"]
        # Kafka gets the same in its properties: group workloads compare rebalances, not the delay.
        cmd += ["--set", "group.initial.rebalance.delay.ms=0"]
        return cmd, dict(os.environ, **TIDELOG_ENV)


# At the bottom: cluster.py subclasses KafkaSystem from this module.
from harness.cluster import KafkaCluster  # noqa: E402
from harness.tidelogcluster import TidelogCluster  # noqa: E402

SYSTEMS: dict[str, type[System]] = {
    "kafka": KafkaSystem,
    "tidelog": TidelogSystem,
    "kafka3": KafkaCluster,
    "tidelog3": TidelogCluster,
}
