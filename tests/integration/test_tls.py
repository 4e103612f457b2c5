"""SSL listeners through real clients (librdkafka, kafka-python): TLS 1.2/1.3 with the broker's
certificate checked by the clients, mutual TLS (ssl.client.auth=required: a client without a
certificate, or with one from a foreign CA, is refused), a plaintext client and garbage on the TLS
port cut off cleanly while other clients carry on, a cluster replicating over an SSL inter-broker
listener, and bad TLS settings refused at start with a message."""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certs import Pki, make_pki
from clusterclients import produce, read_all
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, KafkaProducer
from tidelogbroker import TIDELOG, free_port, tidelog_broker
from tidelogcluster import tidelog_cluster, wait_until

pytestmark = pytest.mark.timeout(240)

SSL_MAP = "PLAIN:PLAINTEXT,TLS:SSL,MTLS:SSL"
# ApiVersions v0, correlation id 1, no client id: any broker that accepts the connection answers it.
API_VERSIONS = b"\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x01\xff\xff"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[dict[str, int]]:
    """PLAIN, TLS (server certificate only) and MTLS (client certificates required) listeners."""
    ports = {"PLAIN": free_port(), "TLS": free_port(), "MTLS": free_port()}
    listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
    with tidelog_broker(
        tmp_path,
        "--listen", listeners,
        "--set", f"listener.security.protocol.map={SSL_MAP}",
        "--set", f"ssl.keystore.location={pki.broker}",
        "--set", f"ssl.truststore.location={pki.ca}",
        "--set", "listener.name.mtls.ssl.client.auth=required",
        port=ports["PLAIN"],
    ):  # fmt: skip
        yield ports


def _librdkafka_tls(pki: Pki, port: int, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SSL", "ssl.ca.location": str(pki.ca),
            **extra}  # fmt: skip


def test_librdkafka_and_kafka_python_over_tls(broker: dict[str, int], pki: Pki) -> None:
    conf = _librdkafka_tls(pki, broker["TLS"])
    acked, errors = produce(conf["bootstrap.servers"], "secret", [f"s{i}" for i in range(300)], **{
        k: v for k, v in conf.items() if k != "bootstrap.servers"})  # fmt: skip
    assert errors == []
    assert len(acked) == 300
    consumer = KafkaConsumer(
        "secret",
        bootstrap_servers=f"127.0.0.1:{broker['TLS']}",
        security_protocol="SSL",
        ssl_cafile=str(pki.ca),
        auto_offset_reset="earliest",
        consumer_timeout_ms=8000,
    )
    try:
        assert sorted(m.value.decode() for m in consumer) == sorted(acked)
    finally:
        consumer.close()
    # The same data through the plaintext listener: one log, several ways in.
    assert sorted(read_all(f"127.0.0.1:{broker['PLAIN']}", "secret", 1)) == sorted(acked)


def test_tls_1_2_and_1_3_both_work_and_the_record_bytes_arrive_intact(broker: dict[str, int], pki: Pki) -> None:
    values = [bytes([i % 256]) * (1000 + i) for i in range(200)]  # various sizes, every byte value
    producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{broker['TLS']}", security_protocol="SSL",
                             ssl_cafile=str(pki.ca), compression_type="lz4", acks="all")  # fmt: skip
    for v in values:
        producer.send("bytes", v)
    producer.flush(30)
    producer.close()
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.minimum_version = ctx.maximum_version = version
        with (
            socket.create_connection(("127.0.0.1", broker["TLS"]), 5) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock,
        ):
            assert tls_sock.version() == version.name.replace("_", ".")
    consumer = Consumer(_librdkafka_tls(pki, broker["TLS"], **{"group.id": "bytes", "auto.offset.reset": "earliest"}))
    try:
        consumer.subscribe(["bytes"])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < len(values) and time.monotonic() < deadline:
            got += [m.value() for m in consumer.consume(500, 1.0) if not m.error()]
    finally:
        consumer.close()
    assert got == values


def test_mutual_tls_admits_certified_clients_only(broker: dict[str, int], pki: Pki) -> None:
    port = broker["MTLS"]
    with_cert = _librdkafka_tls(pki, port, **{"ssl.certificate.location": str(pki.client_cert),
                                              "ssl.key.location": str(pki.client_key)})  # fmt: skip
    acked, errors = produce(with_cert["bootstrap.servers"], "mtls", ["a", "b", "c"],
                            **{k: v for k, v in with_cert.items() if k != "bootstrap.servers"})  # fmt: skip
    assert errors == []
    assert acked == {"a", "b", "c"}
    foreign = _librdkafka_tls(pki, port, **{"ssl.certificate.location": str(pki.foreign_client_cert),
                                            "ssl.key.location": str(pki.foreign_client_key)})  # fmt: skip
    expired = _librdkafka_tls(pki, port, **{"ssl.certificate.location": str(pki.expired_client_cert),
                                            "ssl.key.location": str(pki.expired_client_key)})  # fmt: skip
    for conf in (_librdkafka_tls(pki, port), foreign, expired):
        with pytest.raises(KafkaException):
            AdminClient(conf).list_topics(timeout=5)
    # The expired certificate is refused for its dates: alice's, from the same CA, is admitted (above).
    late = ssl.create_default_context(cafile=str(pki.ca))
    late.load_cert_chain(str(pki.expired_client_cert), str(pki.expired_client_key))
    with (
        socket.create_connection(("127.0.0.1", port), 5) as raw,
        late.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock,
    ):
        tls_sock.settimeout(5)
        assert _refused(tls_sock)
    # A raw TLS handshake without a certificate is refused by the broker (TLS 1.3 reports it at the first read).
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with (
        socket.create_connection(("127.0.0.1", port), 5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock,
    ):
        tls_sock.settimeout(5)
        assert _refused(tls_sock)
    with (
        socket.create_connection(("127.0.0.1", broker["TLS"]), 5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock,
    ):
        tls_sock.settimeout(5)
        assert not _refused(tls_sock)  # the same probe on the listener without client certificates: answered


def _refused(tls_sock: ssl.SSLSocket) -> bool:
    """The broker ends the TLS session: an alert (SSLError), a reset, or end of stream on the first read."""
    try:
        tls_sock.sendall(API_VERSIONS)
        return not tls_sock.recv(1)
    except (ssl.SSLError, ConnectionError):
        return True


def test_plaintext_and_garbage_on_the_tls_port_are_cut_off_and_harm_nobody(broker: dict[str, int], pki: Pki) -> None:
    for junk in (API_VERSIONS,  # a plaintext client
                 b"\x16\x03\x01\x02\x00" + b"\xff" * 512,  # a ClientHello gone wrong
                 bytes(range(256)) * 8):  # fmt: skip
        with socket.create_connection(("127.0.0.1", broker["TLS"]), 5) as s:
            s.settimeout(15)
            s.sendall(junk)
            try:
                answer = s.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"\x00\x00"), "a Kafka answer over a TLS port to a plaintext client"
    acked, errors = produce(f"127.0.0.1:{broker['TLS']}", "after-junk", ["x"], **{
        "security.protocol": "SSL", "ssl.ca.location": str(pki.ca)})  # fmt: skip
    assert errors == []
    assert acked == {"x"}


def test_a_cluster_replicates_over_an_ssl_inter_broker_listener(tmp_path: Path, pki: Pki) -> None:
    tls_args = [
        "--set", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,REPLICATION:SSL",
        "--set", "inter.broker.listener.name=REPLICATION",
        "--set", f"ssl.keystore.location={pki.broker}",
        "--set", f"ssl.truststore.location={pki.ca}",
        "--set", "ssl.client.auth=required",
    ]  # fmt: skip
    with tidelog_cluster(tmp_path, 3, *tls_args, replication_tls=True) as cluster:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        admin.create_topics([NewTopic("r", 3, 3, config={"min.insync.replicas": "3"})])["r"].result(30)

        def full_isr() -> bool:
            parts = admin.list_topics("r", timeout=10).topics["r"].partitions
            return len(parts) == 3 and all(len(p.isrs) == 3 for p in parts.values())

        wait_until(full_isr, 30, "r: every follower in sync over TLS")
        values = [f"v{i}" for i in range(500)]
        acked, errors = produce(cluster.bootstrap, "r", values)  # acks=all with min ISR 3: the followers copied
        assert errors == []
        assert acked == set(values)
        for broker_id, b in cluster.brokers.items():
            log = b.log_path.read_text()
            assert "TLS with" not in log, f"broker {broker_id}: a TLS failure between brokers"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ([], "has no ssl.keystore.location"),
        (["--set", "ssl.keystore.location=/no/such.pem"], "/no/such.pem: no such file"),
        (["--set", "ssl.keystore.location={ca}"], "not a PEM private key"),
        (["--set", "ssl.keystore.location={broker}", "--set", "ssl.client.auth=required"], "needs a truststore"),
        (["--set", "ssl.keystore.location={broker}", "--set", "ssl.enabled.protocols=TLSv1.1"],
         "TLSv1.2 and TLSv1.3 only"),
        (["--set", "ssl.keystore.type=JKS"], "only PEM files are read"),
    ],
)  # fmt: skip
def test_bad_tls_settings_stop_the_broker_clearly(tmp_path: Path, pki: Pki, settings: list[str], message: str) -> None:
    args = [a.format(ca=pki.ca, broker=pki.broker) for a in settings]
    done = subprocess.run(
        [str(TIDELOG), "broker", "--data-dir", str(tmp_path / "data"), "--metrics-port", "0",
         "--listen", f"SSL://127.0.0.1:{free_port()}", *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert message in done.stdout + done.stderr


def _client_hello(pki: Pki) -> bytes:
    """The first flight of a real TLS client (Python's ssl), taken from a memory BIO."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_mangled_tls_handshakes_leave_the_broker_serving(broker: dict[str, int], pki: Pki) -> None:
    """200 handshakes gone wrong (a real ClientHello with random bytes flipped, cut short, or
    followed by garbage) while a real client keeps producing over TLS: every record is acknowledged
    and the broker answers afterwards."""
    hello = _client_hello(pki)
    rng = random.Random(9)
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(pki.ca)}
    values = [f"v{i}" for i in range(200)]
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{broker['TLS']}", "linger.ms": 1, **conf})
    acked: list[str] = []
    for i, value in enumerate(values):
        mangled = bytearray(hello)
        kind = i % 3
        if kind == 0:
            for _ in range(rng.randint(1, 8)):
                mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        elif kind == 1:
            del mangled[rng.randrange(1, len(mangled)) :]
        else:
            mangled += rng.randbytes(rng.randint(1, 2048))
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", broker["TLS"]), 5) as s:
            s.settimeout(0.1)  # a short hello leaves the broker waiting for the rest: hang up on it
            s.sendall(bytes(mangled))
            with contextlib.suppress(OSError):
                s.recv(4096)
        producer.produce("tls-fuzz", value.encode(), on_delivery=lambda err, msg: acked.append(msg.value().decode())
                         if err is None else None)  # fmt: skip
        producer.poll(0)
    assert producer.flush(30) == 0
    assert sorted(acked) == sorted(values)
    more, errors = produce(f"127.0.0.1:{broker['TLS']}", "tls-fuzz", ["after"], **conf)
    assert (more, errors) == ({"after"}, [])
