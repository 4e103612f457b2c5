"""SASL through real clients: users made with Kafka's AlterUserScramCredentials (confluent-kafka's
admin client), then SCRAM-SHA-256/512 and PLAIN with librdkafka and kafka-python over
SASL_PLAINTEXT and SASL_SSL; wrong passwords and unknown users get SASL_AUTHENTICATION_FAILED and
the connection closed; requests before authentication close the connection; credentials survive a
restart and are shared by a cluster's brokers."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certs import Pki, make_pki
from clusterclients import produce
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from kafka import KafkaConsumer
from kafka.errors import KafkaError as KafkaPythonError
from rawkafka import body, call, header, read_frame, send_frame
from realkafka import run_java_tool
from tidelogbroker import RunningBroker, free_port, tidelog_broker
from tidelogcluster import tidelog_cluster

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _broker_args(pki: Pki, ports: dict[str, int]) -> list[str]:
    listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in ports.items())
    return [
        "--listen", listeners,
        "--set", "listener.security.protocol.map=PLAIN:PLAINTEXT,SASL:SASL_PLAINTEXT,SASLS:SASL_SSL",
        "--set", "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
        "--set", f"ssl.keystore.location={pki.broker}",
        "--set", "connection.failed.authentication.delay.ms=50",
        "--set", "connection.failed.authentication.max.per.minute=0",  # (fuzzing fails often; tested apart)
    ]  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[tuple[RunningBroker, dict[str, int]]]:
    ports = {"PLAIN": free_port(), "SASL": free_port(), "SASLS": free_port()}
    with tidelog_broker(tmp_path, *_broker_args(pki, ports), port=ports["PLAIN"]) as b:
        yield b, ports


def _add_user(bootstrap: str, user: str, password: str, *mechanisms: ScramMechanism) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(m, 8192), password.encode()) for m in mechanisms]
    for future in admin.alter_user_scram_credentials(upserts).values():  # type: ignore[arg-type]
        future.result(10)


def _sasl(port: int, mechanism: str, user: str, password: str, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password, **extra}  # fmt: skip


def _auth_errors(conf: dict[str, Any]) -> list[Any]:
    """The errors librdkafka reports (error_cb) while it tries to connect with ``conf``."""
    errors: list[Any] = []
    producer = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    return errors


def _produce(conf: dict[str, Any], topic: str, values: list[str]) -> tuple[set[str], list[str]]:
    return produce(
        conf["bootstrap.servers"], topic, values, **{k: v for k, v in conf.items() if k != "bootstrap.servers"}
    )


def test_scram_and_plain_users_produce_and_consume(broker: tuple[RunningBroker, dict[str, int]], pki: Pki) -> None:
    _b, ports = broker
    plain = f"127.0.0.1:{ports['PLAIN']}"
    _add_user(plain, "alice", "alice-secret", ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)
    admin = AdminClient({"bootstrap.servers": plain})  # kept alive until the answer arrives
    described = admin.describe_user_scram_credentials(["alice"])
    infos = described["alice"].result(10).scram_credential_infos
    assert sorted((i.mechanism, i.iterations) for i in infos) == [
        (ScramMechanism.SCRAM_SHA_256, 8192), (ScramMechanism.SCRAM_SHA_512, 8192)]  # fmt: skip
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"):
        acked, errors = _produce(_sasl(ports["SASL"], mechanism, "alice", "alice-secret"), "s", [mechanism])
        assert errors == []
        assert acked == {mechanism}
    # kafka-python over SASL_SSL with SCRAM-SHA-256 reads what the others wrote.
    secret = "alice-secret"  # noqa: S105 - a test user's password
    consumer = KafkaConsumer(
        "s", bootstrap_servers=f"127.0.0.1:{ports['SASLS']}", security_protocol="SASL_SSL", ssl_cafile=str(pki.ca),
        sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice", sasl_plain_password=secret,
        auto_offset_reset="earliest", consumer_timeout_ms=8000,
    )  # fmt: skip
    try:
        assert sorted(m.value.decode() for m in consumer) == ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    finally:
        consumer.close()
    # The credentials file holds salted keys only.
    stored = (_b.data_dir / "scram-credentials.json").read_text()
    assert "alice-secret" not in stored
    assert "stored_key" in stored


@pytest.mark.parametrize(("mechanism", "user", "password"), [
    ("SCRAM-SHA-512", "alice", "wrong"), ("SCRAM-SHA-256", "nobody", "x"), ("PLAIN", "alice", "wrong"),
    ("PLAIN", "nobody", "x")])  # fmt: skip
def test_wrong_passwords_and_unknown_users_are_refused(
    broker: tuple[RunningBroker, dict[str, int]], mechanism: str, user: str, password: str
) -> None:
    b, ports = broker
    _add_user(f"127.0.0.1:{ports['PLAIN']}", "alice", "alice-secret", ScramMechanism.SCRAM_SHA_512)
    errors = _auth_errors(_sasl(ports["SASL"], mechanism, user, password))
    assert errors, "no error reported"
    assert errors[0].code() == KafkaError._AUTHENTICATION, errors
    assert "Authentication failed" in errors[0].str()
    deadline = time.monotonic() + 5
    while "authentication failed" not in b.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = b.log_text()
    assert f"authentication failed: user {user}, {mechanism}, from 127.0.0.1:" in log
    assert password not in log.split("authentication failed")[-1]  # the secret is never logged
    with pytest.raises(KafkaPythonError):
        KafkaConsumer(bootstrap_servers=f"127.0.0.1:{ports['SASL']}", security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password,
                      request_timeout_ms=5000, bootstrap_timeout_ms=5000).topics()  # fmt: skip


def test_repeated_failures_block_an_address_even_with_the_right_password(tmp_path: Path, pki: Pki) -> None:
    ports = {"PLAIN": free_port(), "SASL": free_port(), "SASLS": free_port()}
    args = [a.replace("max.per.minute=0", "max.per.minute=3") for a in _broker_args(pki, ports)]
    with tidelog_broker(tmp_path, *args, port=ports["PLAIN"]) as b:
        _add_user(f"127.0.0.1:{ports['PLAIN']}", "erin", "erin-secret", ScramMechanism.SCRAM_SHA_512)
        right = {**_sasl(ports["SASL"], "SCRAM-SHA-512", "erin", "erin-secret"), "client.id": "right"}
        assert AdminClient(right).list_topics(timeout=10) is not None  # fine before any failure
        with pytest.raises(KafkaPythonError):  # kafka-python retries its bootstrap: more than 3 wrong guesses
            KafkaConsumer(bootstrap_servers=f"127.0.0.1:{ports['SASL']}", security_protocol="SASL_PLAINTEXT",
                          sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="erin", sasl_plain_password="guess-1",  # noqa: S106
                          request_timeout_ms=5000, bootstrap_timeout_ms=5000).topics()  # fmt: skip
        errors = _auth_errors(right)  # now even the right password is refused from this address
        assert errors, "the right password was accepted while the address is blocked"
        assert errors[0].code() == KafkaError._AUTHENTICATION
        assert "too many failed authentications" in errors[0].str()
        log = b.log_text()
        assert "refusing SASL authentication from 127.0.0.1" in log
        assert log.count("refusing SASL authentication") == 1  # logged once per block, not per attempt
        assert "authentication failed: user erin, SCRAM-SHA-512, from 127.0.0.1:" in log
        assert "guess-" not in log
        assert "erin-secret" not in log


def test_requests_before_authentication_close_the_connection(broker: tuple[RunningBroker, dict[str, int]]) -> None:
    _b, ports = broker
    metadata_v1 = struct.pack(">hhih", 3, 1, 7, -1) + struct.pack(">i", -1)  # all topics
    with socket.create_connection(("127.0.0.1", ports["SASL"]), 5) as s:
        s.settimeout(5)
        s.sendall(struct.pack(">i", len(metadata_v1)) + metadata_v1)
        assert s.recv(4096) == b""  # closed, nothing answered
    # An unsupported mechanism is UNSUPPORTED_SASL_MECHANISM (33) with the enabled list.
    handshake = struct.pack(">hhih", 17, 1, 8, -1) + struct.pack(">h", 6) + b"GSSAPI"
    with socket.create_connection(("127.0.0.1", ports["SASL"]), 5) as s:
        s.settimeout(5)
        s.sendall(struct.pack(">i", len(handshake)) + handshake)
        answer = b""
        while len(answer) < 4 or len(answer) < 4 + struct.unpack(">i", answer[:4])[0]:
            chunk = s.recv(4096)
            assert chunk, f"closed after {answer!r}"
            answer += chunk
    assert struct.unpack(">iih", answer[:10])[1:] == (8, 33)
    assert b"SCRAM-SHA-512" in answer


def test_credentials_survive_a_restart_and_can_be_deleted(broker: tuple[RunningBroker, dict[str, int]]) -> None:
    b, ports = broker
    plain = f"127.0.0.1:{ports['PLAIN']}"
    _add_user(plain, "carol", "c-pass", ScramMechanism.SCRAM_SHA_512)
    assert b.stop() == 0
    b.restart()
    acked, errors = _produce(_sasl(ports["SASL"], "SCRAM-SHA-512", "carol", "c-pass"), "r", ["after-restart"])
    assert errors == []
    assert acked == {"after-restart"}
    admin = AdminClient({"bootstrap.servers": plain})
    deletion = UserScramCredentialDeletion("carol", ScramMechanism.SCRAM_SHA_512)
    admin.alter_user_scram_credentials([deletion])["carol"].result(10)
    errors = _auth_errors(_sasl(ports["SASL"], "SCRAM-SHA-512", "carol", "c-pass"))
    assert [e.code() for e in errors[:1]] == [KafkaError._AUTHENTICATION]
    with pytest.raises(KafkaException):
        admin.alter_user_scram_credentials([deletion])["carol"].result(10)  # RESOURCE_NOT_FOUND


def test_a_cluster_shares_its_users(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path, 3, sasl=True) as cluster:
        _add_user(cluster.brokers[1].bootstrap, "dave", "d-pass", ScramMechanism.SCRAM_SHA_256)
        for broker_id, port in cluster.sasl_ports.items():  # authenticate at each broker, not only the one told
            conf = _sasl(port, "SCRAM-SHA-256", "dave", "d-pass")
            md = AdminClient(conf).list_topics(timeout=10)
            assert len(md.brokers) == 3, f"broker {broker_id}"


def test_kafka_java_tools_make_a_user_and_use_it_over_sasl_ssl(
    broker: tuple[RunningBroker, dict[str, int]], pki: Pki, tmp_path: Path
) -> None:
    """Kafka's own kafka-configs makes the user (AlterUserScramCredentials), its Java producer and
    console consumer authenticate with SCRAM-SHA-512 over TLS (a PEM truststore)."""
    _b, ports = broker
    plain = f"127.0.0.1:{ports['PLAIN']}"
    made = run_java_tool("kafka.admin.ConfigCommand", "--bootstrap-server", plain, "--alter", "--add-config",
                         "SCRAM-SHA-512=[iterations=8192,password=java-secret]", "--entity-type", "users",
                         "--entity-name", "javauser")  # fmt: skip
    assert made.returncode == 0, made.stderr + made.stdout
    # (kafka-configs --describe of users also asks DescribeClientQuotas: quotas are not served yet.)
    admin = AdminClient({"bootstrap.servers": plain})
    infos = admin.describe_user_scram_credentials(["javauser"])["javauser"].result(10).scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_512, 8192)]
    client = tmp_path / "client.properties"
    client.write_text(
        "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="javauser" '
        'password="java-secret";\n'
        f"ssl.truststore.type=PEM\nssl.truststore.location={pki.ca}\n"
    )
    sasls = f"127.0.0.1:{ports['SASLS']}"
    perf = run_java_tool("org.apache.kafka.tools.ProducerPerformance", "--topic", "java-sasl", "--num-records", "2000",
                         "--record-size", "512", "--throughput", "-1", "--producer.config", str(client),
                         "--producer-props", f"bootstrap.servers={sasls}")  # fmt: skip
    assert perf.returncode == 0, perf.stderr + perf.stdout
    assert "2000 records sent" in perf.stdout
    consumed = run_java_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", sasls,
                             "--topic", "java-sasl", "--from-beginning", "--max-messages", "2000",
                             "--consumer.config", str(client), "--timeout-ms", "30000")  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr[-2000:]
    assert len(consumed.stdout.splitlines()) == 2000
    wrong = tmp_path / "wrong.properties"
    wrong.write_text(client.read_text().replace('password="java-secret"', 'password="nope"'))
    refused = run_java_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", sasls,
                            "--topic", "java-sasl", "--from-beginning", "--max-messages", "1",
                            "--consumer.config", str(wrong), "--timeout-ms", "15000")  # fmt: skip
    out = refused.stderr + refused.stdout
    assert "Processed a total of 0 messages" in out  # the console consumer exits 0 having read nothing
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in out


def test_fuzzed_sasl_exchanges_leave_the_broker_serving(broker: tuple[RunningBroker, dict[str, int]]) -> None:
    """Random SASL tokens and frames on the SASL listener: each connection is answered or closed,
    the broker stays up, and a real client authenticates afterwards."""
    b, ports = broker
    _add_user(f"127.0.0.1:{ports['PLAIN']}", "erin", "e-pass", ScramMechanism.SCRAM_SHA_256)
    rng = random.Random(20261125)
    for i in range(120):
        with socket.create_connection(("127.0.0.1", ports["SASL"]), 5) as s:
            s.settimeout(5)
            mechanism = rng.choice(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
            answer = call(s, 17, 1, correlation_id=i, mechanism=mechanism)
            assert answer.error_code.value == 0
            for round_ in range(rng.randint(1, 3)):
                token = rng.randbytes(rng.randint(0, 200))
                if round_ == 0 and mechanism != "PLAIN" and rng.random() < 0.5:
                    token = b"n,,n=erin,r=" + rng.randbytes(8).hex().encode()  # a valid first message
                try:
                    send_frame(s, header(36, 2, 1000 + round_, flexible=True) + body(36, 2, auth_bytes=token))
                    if not read_frame(s):
                        break  # closed after a failure: what must happen
                except (ConnectionResetError, BrokenPipeError):
                    break  # closed (reset: our next frame was unread when it closed)
            if rng.random() < 0.3:
                with contextlib.suppress(OSError):  # the broker may have closed already
                    send_frame(s, rng.randbytes(rng.randint(0, 64)))  # junk after it all
        assert b.alive(), f"broker died on connection {i}:\n{b.log_text()[-2000:]}"
    acked, errors = _produce(_sasl(ports["SASL"], "SCRAM-SHA-256", "erin", "e-pass"), "after-fuzz", ["ok"])
    assert errors == []
    assert acked == {"ok"}
