"""A real Tidelog cluster on loopback: a real etcd and N broker processes (``tidelog broker
--metadata etcd://...``), each on free ports with its own data directory. Brokers can be killed,
paused, stopped gracefully and restarted; logs are printed when the body fails.

With ``proxied=True`` every broker gets two ``faultproxy.Link`` proxies, so a nemesis can cut it off
the network: ``kafka_links[i]`` sits in front of its Kafka port and is what it advertises (clients
and the other brokers' replica fetchers all cross it: cutting it isolates the broker's inbound
traffic), and ``etcd_links[i]`` is what its ``--metadata etcd://...`` points at (cutting it ends the
broker's etcd session once ``metadata.session.timeout.ms`` passes). Each broker has its own etcd
link, so cutting one affects that broker only."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient
from etcdserver import EtcdServer, etcd_server
from faultproxy import Link
from tidelogbroker import RunningBroker, _spawn, free_port, wait_for_port


@dataclass
class TidelogCluster:
    etcd: EtcdServer
    brokers: dict[int, RunningBroker]
    name: str
    admin_ports: dict[int, int]
    kafka_links: dict[int, Link] = field(default_factory=dict)
    etcd_links: dict[int, Link] = field(default_factory=dict)
    external_ports: dict[int, int] = field(default_factory=dict)
    sasl_ports: dict[int, int] = field(default_factory=dict)
    client_conf: dict[str, str] = field(default_factory=dict)  # librdkafka settings for ``bootstrap``
    mtls_ports: dict[int, int] = field(default_factory=dict)

    @property
    def external_bootstrap(self) -> str:
        """The EXTERNAL listeners (``tidelog_cluster(..., external=True)``)."""
        return ",".join(f"127.0.0.2:{port}" for port in self.external_ports.values())

    def admin_target(self, broker_id: int) -> str:
        """HOST:PORT of ``broker_id``'s gRPC admin API."""
        return f"127.0.0.1:{self.admin_ports[broker_id]}"

    @property
    def bootstrap(self) -> str:
        if self.kafka_links:
            return ",".join(f"127.0.0.1:{link.port}" for link in self.kafka_links.values())
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
        self.admin_ports[broker_id] = _admin_port(self.brokers[broker_id])

    def logs(self) -> str:
        return "\n".join(f"----- broker {i} -----\n{b.log_text()}" for i, b in self.brokers.items())


def _admin_port(b: RunningBroker) -> int:
    """The admin API's port, from the broker's start-up log line."""
    found = re.findall(r"admin API \(gRPC\) on [^:]+:(\d+)", b.log_text())  # the latest start's
    if not found:
        raise RuntimeError(f"the broker did not log its admin port:\n{b.log_text()}")
    return int(found[-1])


def _sees_everyone(cluster: TidelogCluster, size: int) -> bool:
    """Every broker's Metadata answer lists ``size`` brokers and a controller."""
    for b in cluster.brokers.values():
        md = AdminClient({**cluster.client_conf, "bootstrap.servers": b.bootstrap}).list_topics(timeout=5)
        if len(md.brokers) != size or md.controller_id < 0:
            return False
    return True


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not reached within {timeout}s")


@contextlib.contextmanager
def tidelog_cluster(
    tmp: Path,
    size: int = 3,
    *extra: str,
    proxied: bool = False,
    external: bool = False,
    replication_tls: bool = False,
    sasl: bool = False,
    listener: str | None = None,
    client_conf: dict[str, str] | None = None,
    before_start: Callable[[EtcdServer], None] | None = None,
    mtls: bool = False,
) -> Iterator[TidelogCluster]:
    """``size`` brokers (ids 1..size) sharing one etcd; session timeout 3 s so failover is quick.
    ``proxied``: each broker behind its own Kafka and etcd ``Link`` (see the module docstring).
    ``external``: two named listeners, INTERNAL on 127.0.0.1 (inter-broker, ``bootstrap``) and
    EXTERNAL on 127.0.0.2 (``external_ports``, ``external_bootstrap``).
    ``replication_tls``: a second listener REPLICATION on 127.0.0.1 for the brokers' own traffic
    (``extra`` names its protocol and TLS settings).
    ``sasl``: a second listener SASL (SASL_PLAINTEXT, SCRAM) on 127.0.0.1 (``sasl_ports``).
    ``listener``: the one listener is named after this protocol (``SASL_SSL``: ``extra`` holds its
    settings), and ``client_conf`` holds what a librdkafka client needs to talk to it.
    ``before_start``: called with the etcd server before any broker starts (seed users, ...).
    ``mtls``: a second listener MTLS (SSL, client certificates required) on 127.0.0.1
    (``mtls_ports``; ``extra`` holds ``ssl.keystore.location`` and ``ssl.truststore.location``)."""
    (tmp / "etcd").mkdir(parents=True, exist_ok=True)
    with etcd_server(tmp / "etcd") as etcd:
        url = f"etcd://{etcd.endpoints[0]}/test"
        brokers: dict[int, RunningBroker] = {}
        admin_ports: dict[int, int] = {}
        kafka_links: dict[int, Link] = {}
        etcd_links: dict[int, Link] = {}
        external_ports: dict[int, int] = {}
        sasl_ports: dict[int, int] = {}
        mtls_ports: dict[int, int] = {}
        if before_start is not None:
            before_start(etcd)
        try:
            for broker_id in range(1, size + 1):
                port, metrics_port = free_port(), free_port()
                data_dir = tmp / f"broker-{broker_id}"
                data_dir.mkdir(parents=True)
                member_url, network = url, []
                if proxied:
                    kafka_links[broker_id] = kafka_link = Link(port)
                    etcd_links[broker_id] = etcd_link = Link(etcd.client_port)
                    kafka_link.start()
                    etcd_link.start()
                    member_url = f"etcd://127.0.0.1:{etcd_link.port}/test"
                    network = ["--advertise", f"127.0.0.1:{kafka_link.port}"]
                if external:
                    external_ports[broker_id] = ext = free_port()
                    network += [
                        "--listen", f"INTERNAL://127.0.0.1:{port},EXTERNAL://127.0.0.2:{ext}",
                        "--set", "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
                        "--set", "inter.broker.listener.name=INTERNAL",
                    ]  # fmt: skip
                if sasl:
                    sasl_ports[broker_id] = sasl_port = free_port()
                    network += [
                        "--listen", f"PLAINTEXT://127.0.0.1:{port},SASL://127.0.0.1:{sasl_port}",
                        "--set", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL:SASL_PLAINTEXT",
                    ]  # fmt: skip
                if listener:
                    network += ["--listen", f"{listener}://127.0.0.1:{port}"]
                if mtls:
                    mtls_ports[broker_id] = mtls_port = free_port()
                    network += [
                        "--listen", f"PLAINTEXT://127.0.0.1:{port},MTLS://127.0.0.1:{mtls_port}",
                        "--set", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,MTLS:SSL",
                        "--set", "listener.name.mtls.ssl.client.auth=required",
                    ]  # fmt: skip
                if replication_tls:
                    network += ["--listen", f"PLAINTEXT://127.0.0.1:{port},REPLICATION://127.0.0.1:{free_port()}"]
                args = [
                    *network,
                    "--node-id",
                    str(broker_id),
                    "--metadata",
                    member_url,
                    "--admin",
                    "127.0.0.1:0",  # any free port (no race with other processes); read back from the log
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
            for broker_id, b in brokers.items():
                wait_for_port(b.port, b.proc, b.log_path)
                admin_ports[broker_id] = _admin_port(b)
            cluster = TidelogCluster(
                etcd,
                brokers,
                "test",
                admin_ports,
                kafka_links,
                etcd_links,
                external_ports,
                sasl_ports,
                dict(client_conf or {}),
                mtls_ports,
            )
            try:
                wait_until(lambda: _sees_everyone(cluster, size), 30, f"every broker seeing {size} brokers")
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
            for link in [*kafka_links.values(), *etcd_links.values()]:
                link.stop()
