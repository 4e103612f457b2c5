"""The nemesis of the cluster fault tests: the faults, each logged with its time and counted.

It acts on a ``TidelogCluster`` only through the processes and proxies the fixture started:
SIGKILL / SIGSTOP / SIGCONT / restart of a broker, SIGSTOP / SIGTERM of etcd, and cutting a
broker's ``faultproxy.Link`` to etcd or in front of its Kafka port (``proxied=True`` clusters).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tidelogcluster import TidelogCluster


@dataclass
class Nemesis:
    cluster: TidelogCluster
    faults: int = 0
    events: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:7.2f}s {what}")

    def kill(self, broker_id: int) -> None:
        self.note(f"SIGKILL broker {broker_id}")
        self.cluster.kill(broker_id)
        self.faults += 1

    def restart(self, broker_id: int) -> None:
        self.note(f"restart broker {broker_id}")
        self.cluster.restart(broker_id)

    def pause(self, broker_id: int) -> None:
        self.note(f"SIGSTOP broker {broker_id}")
        self.cluster.pause(broker_id)
        self.faults += 1

    def resume(self, broker_id: int) -> None:
        self.note(f"SIGCONT broker {broker_id}")
        self.cluster.resume(broker_id)

    def cut_etcd(self, broker_id: int) -> None:
        self.note(f"cut broker {broker_id} <-> etcd")
        self.cluster.etcd_links[broker_id].cut()
        self.faults += 1

    def heal_etcd(self, broker_id: int) -> None:
        self.note(f"heal broker {broker_id} <-> etcd")
        self.cluster.etcd_links[broker_id].heal()

    def isolate(self, broker_id: int) -> None:
        """Cut ``broker_id`` off etcd and off every inbound Kafka connection (clients, followers)."""
        self.note(f"isolate broker {broker_id} (etcd and inbound Kafka)")
        self.cluster.etcd_links[broker_id].cut()
        self.cluster.kafka_links[broker_id].cut()
        self.faults += 1

    def heal(self, broker_id: int) -> None:
        self.note(f"heal broker {broker_id}")
        self.cluster.kafka_links[broker_id].heal()
        self.cluster.etcd_links[broker_id].heal()

    def pause_etcd(self) -> None:
        self.note("SIGSTOP etcd")
        self.cluster.etcd.pause()
        self.faults += 1

    def resume_etcd(self) -> None:
        self.note("SIGCONT etcd")
        self.cluster.etcd.resume()

    def stop_etcd(self) -> None:
        self.note("stop etcd")
        self.cluster.etcd.stop()
        self.faults += 1

    def start_etcd(self) -> None:
        self.note("start etcd")
        self.cluster.etcd.start()

    def log(self) -> str:
        return "\n".join(self.events)
