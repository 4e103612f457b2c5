"""ACLs through real clients: Kafka's own ``kafka-acls`` (org.apache.kafka.tools.AclCommand) grants
and revokes; librdkafka, kafka-python and Kafka's Java console tools, authenticated with SCRAM,
are admitted or refused with Kafka's error codes (TOPIC_/GROUP_/CLUSTER_AUTHORIZATION_FAILED);
Metadata hides what a principal may not describe; deny wins; bindings survive a restart; in a
cluster a binding made through one broker is enforced by every broker.

Each broker has a PLAINTEXT listener on loopback whose (anonymous) clients are super users: how the
test bootstraps users and ACLs, as an operator's internal listener would; clients under test come
in through the SASL listener as themselves."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from certs import make_pki
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import TopicAuthorizationFailedError
from realkafka import run_java_tool
from securedclients import SECURED, as_user, consume, first_error, produce_codes
from tidelogbroker import TIDELOG, RunningBroker, free_port, tidelog_broker
from tidelogcluster import tidelog_cluster

from tidelog.broker.admin.client import AdminClient as ControlClient
from tidelog.broker.admin.model import AclDesc
from tidelog.broker.protocol.errors import KafkaError as ProtocolKafkaError

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[RunningBroker, int]]:
    plain, sasl = free_port(), free_port()
    with tidelog_broker(
        tmp_path,
        "--listen", f"PLAINTEXT://127.0.0.1:{plain},SASL://127.0.0.1:{sasl}",
        "--set", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL:SASL_PLAINTEXT",
        *SECURED,
        port=plain,
    ) as b:  # fmt: skip
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        _users(admin, "alice", "bob")
        for future in admin.create_topics([NewTopic(t, 2, 1) for t in ("orders", "secret")]).values():
            future.result(15)
        yield b, sasl


def _users(admin: AdminClient, *names: str) -> None:
    upserts = [
        UserScramCredentialUpsertion(n, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), f"{n}-pw".encode())
        for n in names
    ]
    for future in admin.alter_user_scram_credentials(upserts).values():  # type: ignore[arg-type]
        future.result(15)


def _acls(bootstrap: str, *args: str) -> str:
    """Kafka's kafka-acls tool against ``bootstrap``; its standard output."""
    done = run_java_tool("org.apache.kafka.tools.AclCommand", "--bootstrap-server", bootstrap, *args)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    return done.stdout


def _pid_error(conf: dict[str, Any]) -> int | None:
    """The fatal error code an idempotent producer reports within 15 s (None: none)."""
    fatal: list[KafkaError] = []
    producer = Producer({**conf, "enable.idempotence": True, "error_cb": fatal.append})
    deadline = time.monotonic() + 15
    while not fatal and time.monotonic() < deadline:
        try:
            producer.poll(0.2)
        except KafkaException as exc:  # raised by poll once the error is fatal
            return int(exc.args[0].code())
    return fatal[0].code() if fatal else None


def test_kafka_acls_grants_and_clients_get_kafkas_error_codes(broker: tuple[RunningBroker, int]) -> None:
    b, sasl = broker
    alice, bob = as_user("alice", sasl), as_user("bob", sasl)
    # Nothing granted yet: alice is refused everywhere, and sees no topics.
    assert produce_codes(alice, "orders", 1) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert set(AdminClient(alice).list_topics(timeout=10).topics) == set()

    out = _acls(b.bootstrap, "--add", "--allow-principal", "User:alice", "--operation", "Write", "--operation",
                "Describe", "--topic", "orders")  # fmt: skip
    assert "User:alice" in out
    _acls(b.bootstrap, "--add", "--allow-principal", "User:alice", "--operation", "Read", "--topic", "ord",
          "--resource-pattern-type", "prefixed", "--group", "app")  # fmt: skip
    listed = _acls(b.bootstrap, "--list", "--topic", "orders")
    assert "name=orders, patternType=LITERAL" in listed
    assert "operation=WRITE" in listed
    assert "operation=DESCRIBE" in listed

    assert produce_codes(alice, "orders") == [None, None, None]
    refused = produce_codes(alice, "secret", 1)
    assert refused == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    assert set(AdminClient(alice).list_topics(timeout=10).topics) == {"orders"}  # secret is hidden
    values, errors = consume(alice, "orders", "app", 3)
    assert (sorted(values), errors) == ([b"v0", b"v1", b"v2"], [])
    _values, errors = consume(alice, "orders", "not-app", 1)
    assert [e.code() for e in errors] == [KafkaError.GROUP_AUTHORIZATION_FAILED]

    # bob has nothing: refused produce, no idempotent producer id, no ACL management.
    assert produce_codes(bob, "orders", 1) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    _acls(b.bootstrap, "--add", "--allow-principal", "User:bob", "--operation", "Describe", "--topic", "orders")
    assert _pid_error(bob) == KafkaError.CLUSTER_AUTHORIZATION_FAILED  # he may see the topic, write none
    assert produce_codes({**alice, "enable.idempotence": True}, "orders", 1) == [None]  # WRITE on a topic suffices
    grant = AclBinding(ResourceType.TOPIC, "secret", ResourcePatternType.LITERAL, "User:bob", "*",
                       AclOperation.ALL, AclPermissionType.ALLOW)  # fmt: skip
    bobs_admin = AdminClient(bob)  # (kept alive until the answer arrives)
    with pytest.raises(KafkaException) as denied:
        bobs_admin.create_acls([grant])[grant].result(10)
    assert denied.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED

    # A prefixed DENY wins over alice's literal ALLOW.
    _acls(b.bootstrap, "--add", "--deny-principal", "User:alice", "--operation", "Write", "--topic", "ord",
          "--resource-pattern-type", "prefixed")  # fmt: skip
    assert produce_codes(alice, "orders", 1) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    # Removing everything of alice's on the prefix restores her literal grant (and the tool says what went).
    _acls(b.bootstrap, "--remove", "--force", "--topic", "ord", "--resource-pattern-type", "prefixed")
    assert produce_codes(alice, "orders", 1) == [None]
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                  AclPermissionType.ANY)  # fmt: skip
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    remaining = admin.describe_acls(everything).result(10)
    assert sorted((r.principal, r.name, r.operation.name) for r in remaining) == [
        ("User:alice", "app", "READ"), ("User:alice", "orders", "DESCRIBE"), ("User:alice", "orders", "WRITE"),
        ("User:bob", "orders", "DESCRIBE")]  # fmt: skip


def test_bindings_survive_a_restart_and_kafka_python_is_refused_a_topic(broker: tuple[RunningBroker, int]) -> None:
    b, sasl = broker
    _acls(b.bootstrap, "--add", "--allow-principal", "User:bob", "--operation", "Read", "--topic", "orders",
          "--group", "*")  # fmt: skip
    b.stop()
    b.restart()
    assert produce_codes({"bootstrap.servers": b.bootstrap}, "orders") == [None, None, None]  # anonymous: super user
    consumer = KafkaConsumer(
        bootstrap_servers=f"127.0.0.1:{sasl}", security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="bob", sasl_plain_password="bob-pw",  # noqa: S106 - a test user's password
        auto_offset_reset="earliest", consumer_timeout_ms=8000, group_id="bobs",
    )  # fmt: skip
    try:
        consumer.subscribe(["orders"])
        assert sorted(m.value for m in consumer) == [b"v0", b"v1", b"v2"]
    finally:
        consumer.close()
    producer = KafkaProducer(
        bootstrap_servers=f"127.0.0.1:{sasl}", security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="bob", sasl_plain_password="bob-pw", max_block_ms=10000,  # noqa: S106
    )  # fmt: skip
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send("secret", b"no").get(10)
    finally:
        producer.close()


def test_acl_apis_without_an_authorizer_answer_security_disabled(tmp_path: Path) -> None:
    with tidelog_broker(tmp_path) as b:
        listed = run_java_tool("org.apache.kafka.tools.AclCommand", "--bootstrap-server", b.bootstrap, "--list")
        assert listed.returncode == 1
        assert "SecurityDisabledException: no authorizer is configured" in listed.stdout + listed.stderr
        assert produce_codes({"bootstrap.servers": b.bootstrap}, "free-for-all", 1) == [None]


def test_a_binding_made_through_one_broker_is_enforced_by_all(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path, 3, *SECURED, sasl=True) as cluster:
        first = cluster.brokers[1].bootstrap
        admin = AdminClient({"bootstrap.servers": first})
        _users(admin, "carol")
        for future in admin.create_topics([NewTopic("shared", 3, 3)]).values():
            future.result(20)
        grant = AclBinding(ResourceType.TOPIC, "shared", ResourcePatternType.LITERAL, "User:carol", "*",
                           AclOperation.WRITE, AclPermissionType.ALLOW)  # fmt: skip
        admin.create_acls([grant])[grant].result(10)
        deadline = time.monotonic() + 20
        clients = {b: AdminClient(as_user("carol", port)) for b, port in cluster.sasl_ports.items()}  # kept alive
        for broker_id in cluster.sasl_ports:  # each broker leads one partition of three
            while True:
                topics = clients[broker_id].list_topics(timeout=10).topics
                if "shared" in topics or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert "shared" in topics, f"broker {broker_id} does not enforce the new binding"
        assert produce_codes(as_user("carol", cluster.sasl_ports[2], acks="all"), "shared", 9) == [None] * 9
        gone = admin.delete_acls([AclBindingFilter(ResourceType.TOPIC, "shared", ResourcePatternType.LITERAL,
                                                   None, None, AclOperation.ANY, AclPermissionType.ANY)])  # fmt: skip
        assert len(next(iter(gone.values())).result(10)) == 1
        deadline = time.monotonic() + 20
        while (last := produce_codes(as_user("carol", cluster.sasl_ports[3]), "shared", 1)) == [None]:
            assert time.monotonic() < deadline, "broker 3 still admits carol after the binding was deleted"
            time.sleep(0.3)
        assert last == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


def test_users_and_acls_through_the_control_plane(tmp_path: Path) -> None:
    """What the operator's User resource does: a SCRAM user and its exact ACL set through the gRPC
    admin API of any broker, enforced for real clients; a second SetAcls reverts drift."""
    with tidelog_cluster(tmp_path, 3, *SECURED, sasl=True) as cluster:
        admin = AdminClient({"bootstrap.servers": cluster.brokers[1].bootstrap})
        for future in admin.create_topics([NewTopic(t, 1, 3) for t in ("reads", "other")]).values():
            future.result(20)

        def grant(rtype: str, name: str, op: str, permission: str = "ALLOW") -> AclDesc:
            return AclDesc(rtype, name, "LITERAL", "User:app", "*", op, permission)

        async def control(target: str) -> None:
            async with ControlClient(target, timeout=10) as control:
                await control.set_scram_user("app", "SCRAM-SHA-512", "app-pw", 8192)
                assert [(u.name, u.mechanisms) for u in await control.list_scram_users()] == [
                    ("app", ["SCRAM-SHA-512"])
                ]
                wanted = [grant("TOPIC", "reads", "READ"), grant("GROUP", "app", "READ")]
                assert await control.set_acls("User:app", wanted) == (2, 0)
                assert await control.set_acls("User:app", wanted) == (0, 0)  # nothing to do the second time
                assert sorted(await control.list_acls("User:app"), key=str) == sorted(wanted, key=str)
                with pytest.raises(ProtocolKafkaError, match="INVALID_REQUEST"):
                    await control.set_acls("User:app", [grant("TOPIC", "reads", "FLY")])

        asyncio.run(control(cluster.admin_target(2)))
        app = as_user("app", cluster.sasl_ports[3])
        produce_codes({"bootstrap.servers": cluster.brokers[1].bootstrap}, "reads", 2)  # (anonymous: a super user)
        deadline = time.monotonic() + 20
        while (consumed := consume(app, "reads", "app", 2))[0] == [] and time.monotonic() < deadline:
            time.sleep(0.3)  # the other brokers see the new bindings within a watch round trip
        assert sorted(consumed[0]) == [b"v0", b"v1"]
        assert produce_codes(app, "reads", 1) == [KafkaError.TOPIC_AUTHORIZATION_FAILED]  # read, not write

        # Drift: someone grants app WRITE on "other" by hand; the declared set takes it away again.
        extra = AclBinding(ResourceType.TOPIC, "other", ResourcePatternType.LITERAL, "User:app", "*",
                           AclOperation.WRITE, AclPermissionType.ALLOW)  # fmt: skip
        admin.create_acls([extra])[extra].result(10)

        async def revert() -> tuple[int, int]:
            async with ControlClient(cluster.admin_target(1), timeout=10) as control:
                return await control.set_acls(
                    "User:app", [grant("TOPIC", "reads", "READ"), grant("GROUP", "app", "READ")]
                )

        assert asyncio.run(revert()) == (0, 1)

        async def remove_user() -> bool:
            async with ControlClient(cluster.admin_target(3), timeout=10) as control:
                await control.set_acls("User:app", [])
                return await control.delete_scram_user("app")

        assert asyncio.run(remove_user())

        # The same through the CLI: tidelog cluster set-user / set-acls / acls / users / delete-user.
        def cluster_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(TIDELOG), "cluster", *args, "--admin", cluster.admin_target(1)], input=stdin,
                                  text=True, capture_output=True, timeout=60, check=False)  # fmt: skip

        made = cluster_cli("set-user", "cli-user", stdin="cli-pw\n")
        assert made.returncode == 0, made.stderr
        assert "cli-user" in cluster_cli("users").stdout
        acl_file = tmp_path / "acls.json"
        acl_file.write_text(json.dumps([{"resourceType": "TOPIC", "resourceName": "reads", "operation": "READ"}]))
        granted = cluster_cli("set-acls", "User:cli-user", "--file", str(acl_file))
        assert granted.stdout.strip() == "User:cli-user: 1 binding(s) added, 0 removed", granted.stderr
        listed = json.loads(cluster_cli("acls", "--principal", "User:cli-user", "--json").stdout)
        expected = {"resourceType": "TOPIC", "resourceName": "reads", "patternType": "LITERAL",
                    "principal": "User:cli-user", "host": "*", "operation": "READ", "permission": "ALLOW"}  # fmt: skip
        assert listed == [expected]
        acl_file.write_text(json.dumps([{"resourceType": "TOPIC", "resourceName": "reads", "operation": "FLY"}]))
        bad = cluster_cli("set-acls", "User:cli-user", "--file", str(acl_file))
        assert bad.returncode == 1
        assert "INVALID_REQUEST" in bad.stderr
        assert "credentials deleted" in cluster_cli("delete-user", "cli-user").stdout
        assert first_error(app) == KafkaError._AUTHENTICATION


def test_the_control_plane_refuses_acls_without_an_authorizer(tmp_path: Path) -> None:
    with tidelog_cluster(tmp_path, 1) as cluster:

        async def attempt() -> None:
            async with ControlClient(cluster.admin_target(1), timeout=10) as control:
                await control.set_scram_user("solo", "SCRAM-SHA-256", "pw")  # users work without one
                with pytest.raises(ProtocolKafkaError, match="SECURITY_DISABLED"):
                    await control.set_acls("User:solo", [])

        asyncio.run(attempt())


def test_the_metrics_endpoint_shows_no_record_data(broker: tuple[RunningBroker, int]) -> None:
    """Names and counts only: a record's key and value never appear on /metrics, even for a topic
    the scraper could not read through Kafka."""
    b, _sasl = broker
    secret = "s3cr3t-payload-9f2c"  # noqa: S105 - a record's content, looked for on /metrics
    producer = Producer({"bootstrap.servers": b.bootstrap})
    producer.produce("secret", key=f"key-{secret}".encode(), value=secret.encode())
    assert producer.flush(10) == 0
    with urllib.request.urlopen(f"http://127.0.0.1:{b.metrics_port}/metrics", timeout=10) as page:
        text = page.read().decode()
    assert 'topic="secret"' in text  # the topic is named (its traffic is counted) ...
    assert secret not in text  # ... its records are not


def test_the_tidelog_cli_logs_in_with_a_client_properties_file(
    broker: tuple[RunningBroker, int], tmp_path: Path
) -> None:
    """``tidelog consume|produce|topics --command-config`` as Kafka's tools take it: SCRAM over the
    SASL listener; what the user may not do is one line and exit 1."""
    b, sasl = broker
    _acls(b.bootstrap, "--add", "--allow-principal", "User:alice", "--operation", "Read", "--operation", "Write",
          "--topic", "orders")  # fmt: skip
    props = tmp_path / "client.properties"
    props.write_text(
        f"bootstrap.servers=127.0.0.1:{sasl}\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" '
        'password="alice-pw";\n'
    )

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(TIDELOG), *args, "--command-config", str(props)], input=stdin, text=True,
                              capture_output=True, timeout=60, check=False)  # fmt: skip

    made = cli("produce", "orders", stdin="one\ntwo\n")
    assert made.returncode == 0, made.stderr
    read = cli("consume", "orders", "--from-beginning", "--max-messages", "2", "--timeout-ms", "10000")
    assert (read.returncode, sorted(read.stdout.split())) == (0, ["one", "two"]), read.stderr
    listed = cli("topics", "list")
    assert listed.stdout.split() == ["orders"]  # "secret" is hidden
    refused = cli("consume", "secret", "--from-beginning", "--max-messages", "1", "--timeout-ms", "5000")
    assert refused.returncode == 1
    assert "TOPIC_AUTHORIZATION_FAILED" in refused.stderr
    props.write_text(props.read_text().replace('password="alice-pw"', 'password="wrong"'))
    wrong = cli("topics", "list")
    assert wrong.returncode == 1
    assert "SASL_AUTHENTICATION_FAILED" in wrong.stderr


def test_mutual_tls_principals_with_kafkas_java_consumer_and_kafka_python(tmp_path: Path) -> None:
    """Over mutual TLS the principal is the certificate's subject: ACLs for User:CN=alice,O=tidelog-tests
    admit Kafka's Java console consumer and kafka-python to one topic and refuse them another."""
    pki = make_pki(tmp_path / "pki")
    plain, mtls = free_port(), free_port()
    with tidelog_broker(
        tmp_path,
        "--listen", f"PLAINTEXT://127.0.0.1:{plain},MTLS://127.0.0.1:{mtls}",
        "--set", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,MTLS:SSL",
        "--set", f"ssl.keystore.location={pki.broker}", "--set", f"ssl.truststore.location={pki.ca}",
        "--set", "listener.name.mtls.ssl.client.auth=required",
        *SECURED,
        port=plain,
    ) as b:  # fmt: skip
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        for future in admin.create_topics([NewTopic(t, 1, 1) for t in ("orders", "secret")]).values():
            future.result(15)
        assert produce_codes({"bootstrap.servers": b.bootstrap}, "orders", 2) == [None, None]
        principal = "User:CN=alice,O=tidelog-tests"
        _acls(b.bootstrap, "--add", "--allow-principal", principal, "--operation", "Read", "--topic", "orders",
              "--group", "java-group")  # fmt: skip
        client = tmp_path / "client.properties"
        client.write_text(
            "security.protocol=SSL\nssl.truststore.type=PEM\n"
            f"ssl.truststore.location={pki.ca}\nssl.keystore.type=PEM\nssl.keystore.location={pki.client}\n"
        )
        common = ["--bootstrap-server", f"127.0.0.1:{mtls}", "--from-beginning", "--group", "java-group",
                  "--consumer.config", str(client)]  # fmt: skip
        read = run_java_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--topic", "orders",
                             "--max-messages", "2", "--timeout-ms", "30000", *common)  # fmt: skip
        assert read.returncode == 0, read.stderr[-2000:]
        assert sorted(read.stdout.split()) == ["v0", "v1"]
        refused = run_java_tool("org.apache.kafka.tools.consumer.ConsoleConsumer", "--topic", "secret",
                                "--max-messages", "1", "--timeout-ms", "15000", *common)  # fmt: skip
        assert "TopicAuthorizationException" in refused.stdout + refused.stderr, refused.stderr[-2000:]
        consumer = KafkaConsumer(
            "orders", bootstrap_servers=f"127.0.0.1:{mtls}", security_protocol="SSL", ssl_cafile=str(pki.ca),
            ssl_certfile=str(pki.client_cert), ssl_keyfile=str(pki.client_key), group_id=None,
            auto_offset_reset="earliest", consumer_timeout_ms=8000, enable_auto_commit=False,
        )  # fmt: skip
        try:
            assert sorted(m.value for m in consumer) == [b"v0", b"v1"]
        finally:
            consumer.close()
