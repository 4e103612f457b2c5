"""Three Tidelog brokers whose metadata store is a real kube-apiserver (``--metadata
kubernetes://NAMESPACE/CLUSTER``: Leases for liveness and the controller, ConfigMaps for topics),
on loopback: a replicated topic survives the SIGKILL of a partition leader with no acknowledged
record lost. Needs the etcd and kube-apiserver binaries only (e2e/support/apiserver.py)."""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "support"))

from apiserver import ApiServer, run_apiserver  # type: ignore[import-not-found]
from clusterclients import produce, read_all  # type: ignore[import-not-found]
from confluent_kafka.admin import AdminClient, NewTopic
from tidelogbroker import RunningBroker, _spawn, free_port, wait_for_port  # type: ignore[import-not-found]

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    with run_apiserver() as server:
        yield server


def _partitions(bootstrap: str, topic: str) -> dict[int, object]:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    t = md.topics.get(topic)
    return dict(t.partitions) if t is not None and t.error is None else {}


def _wait(check: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what}: not within {timeout}s")


def test_brokers_on_the_kubernetes_backend_fail_over(api: ApiServer, tmp_path: Path) -> None:
    ns = f"k8s-cluster-{uuid.uuid4().hex[:6]}"
    api.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    previous = os.environ.get("KUBECONFIG")  # the local cluster's, for the other e2e tests
    os.environ["KUBECONFIG"] = str(api.kubeconfig)  # the brokers inherit it at spawn
    brokers: dict[int, RunningBroker] = {}
    try:
        for broker_id in (1, 2, 3):
            port, metrics = free_port(), free_port()
            data = tmp_path / f"broker-{broker_id}"
            data.mkdir()
            args = [
                "--node-id",
                str(broker_id),
                "--metadata",
                f"kubernetes://{ns}/demo",
                "--set",
                "metadata.session.timeout.ms=3000",
            ]
            proc = _spawn(port, metrics, data / "data", data / "broker.log", args)
            brokers[broker_id] = RunningBroker(port, metrics, data / "data", data / "broker.log", proc, args)
        for b in brokers.values():
            wait_for_port(b.port, b.proc, b.log_path)
        bootstrap = ",".join(b.bootstrap for b in brokers.values())
        _wait(
            lambda: len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=5).brokers) == 3, "3 brokers"
        )
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("k8s", 3, 3, config={"min.insync.replicas": "2"})])["k8s"].result(30)
        _wait(
            lambda: (
                len(_partitions(bootstrap, "k8s")) == 3
                and all(len(p.isrs) == 3 for p in _partitions(bootstrap, "k8s").values())
            ),  # type: ignore[attr-defined]
            "full ISRs",
        )
        first, errors = produce(bootstrap, "k8s", [f"a-{i}" for i in range(2000)])
        assert not errors
        leader = _partitions(bootstrap, "k8s")[0].leader  # type: ignore[attr-defined]
        brokers[leader].proc.send_signal(signal.SIGKILL)
        brokers[leader].proc.wait(10)
        alive = ",".join(b.bootstrap for i, b in brokers.items() if i != leader)
        _wait(
            lambda: all(p.leader not in (leader, -1) for p in _partitions(alive, "k8s").values()),  # type: ignore[attr-defined]
            "new leaders after the Lease expired",
        )
        second, errors = produce(alive, "k8s", [f"b-{i}" for i in range(2000)])
        assert not errors
        seen = set(read_all(alive, "k8s", 3))
        lost = (first | second) - seen
        assert not lost, f"{len(lost)} acknowledged records lost"
        assert len(first | second) == 4000
    except BaseException:
        for i, b in brokers.items():
            print(f"----- broker {i} -----\n{b.log_text()}", file=sys.stderr)
        raise
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        for b in brokers.values():
            b.stop(timeout=20)
