"""A real Tidelog cluster on loopback: a real etcd and N broker processes (``tidelog broker
--metadata etcd://...``), each on free ports with its own data directory. Brokers can be killed,
paused, stopped gracefully and restarted; logs are printed when the body fails."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from etcdserver import EtcdServer, etcd_server
from tidelogbroker import RunningBroker, _spawn, free_port, wait_for_port


@dataclass
class TidelogCluster:
    etcd: EtcdServer
    brokers: dict[int, RunningBroker]
    name: str

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values() if b.alive())

    def kill(self, broker_id: int) -> None:
        b = self.brokers[broker_id]
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(10)

    def pause(self, broker_id: int) -> None:
        self.brokers[broker_id].proc.send_signal(signal.SIGSTOP)

    def resume(self, broker_id: int) -> None:
        self.brokers[broker_id].proc.send_signal(signal.SIGCONT)

    def restart(self, broker_id: int) -> None:
        self.brokers[broker_id].restart()

    def logs(self) -> str:
        return "\n".join(f"----- broker {i} -----\n{b.log_text()}" for i, b in self.brokers.items())


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not reached within {timeout}s")


@contextlib.contextmanager
def tidelog_cluster(tmp: Path, size: int = 3, *extra: str) -> Iterator[TidelogCluster]:
    """``size`` brokers (ids 1..size) sharing one etcd; session timeout 3 s so failover is quick."""
    (tmp / "etcd").mkdir(parents=True, exist_ok=True)
    with etcd_server(tmp / "etcd") as etcd:
        url = f"etcd://{etcd.endpoints[0]}/test"
        brokers: dict[int, RunningBroker] = {}
        try:
            for broker_id in range(1, size + 1):
                port, metrics_port = free_port(), free_port()
                data_dir = tmp / f"broker-{broker_id}"
                data_dir.mkdir(parents=True)
                args = [
                    "--node-id",
                    str(broker_id),
                    "--metadata",
                    url,
                    "--set",
                    "metadata.session.timeout.ms=3000",
                    "--set",
                    "replica.lag.time.max.ms=5000",
                    "--set",
                    "controlled.shutdown.timeout.ms=10000",
                    *extra,
                ]
                log_path = data_dir / "broker.log"
                proc = _spawn(port, metrics_port, data_dir / "data", log_path, args)
                brokers[broker_id] = RunningBroker(port, metrics_port, data_dir / "data", log_path, proc, args)
            for b in brokers.values():
                wait_for_port(b.port, b.proc, b.log_path)
            cluster = TidelogCluster(etcd, brokers, "test")
            try:
                yield cluster
            except BaseException:
                print(cluster.logs(), file=sys.stderr)
                raise
        finally:
            for b in brokers.values():
                if b.alive():
                    with contextlib.suppress(ProcessLookupError):
                        b.proc.send_signal(signal.SIGCONT)
                    b.stop(timeout=20)
