"""The brokers' own SASL login: the JAAS line parsed strictly, the SCRAM client against RFC 7677's
test vector and against Tidelog's own server session, PLAIN, refusals as Kafka errors, and the
inter-broker settings validated at start."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tidelog.broker.client.versions import ApiKey
from tidelog.broker.log.config import InvalidConfigError
from tidelog.broker.protocol.errors import KafkaError
from tidelog.broker.security import scram
from tidelog.broker.security.sasl import SaslSession
from tidelog.broker.security.sasl_client import SaslLogin, ScramClient
from tidelog.broker.server import config

SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


def test_jaas_lines_kafka_writes_are_read() -> None:
    jaas = f'{SCRAM_MODULE} required username="broker" password="s3cr;t \\"x\\"";'
    login = SaslLogin.from_jaas("SCRAM-SHA-512", jaas, "sasl.jaas.config")
    assert (login.mechanism, login.username, login.password) == ("SCRAM-SHA-512", "broker", 's3cr;t "x"')
    assert "s3cr" not in repr(login)
    login = SaslLogin.from_jaas("PLAIN", f'  {PLAIN_MODULE}  required\n  username=admin\n  password="p" ; ', "x")
    assert (login.username, login.password) == ("admin", "p")


@pytest.mark.parametrize(
    ("mechanism", "jaas", "message"),
    [
        ("SCRAM-SHA-256", f'{PLAIN_MODULE} required username="a" password="b";', "needs " + SCRAM_MODULE),
        ("SCRAM-SHA-256", f'{SCRAM_MODULE} optional username="a" password="b";', "expected"),
        ("SCRAM-SHA-256", f'{SCRAM_MODULE} required username="a" password="b"', "must end with ';'"),
        ("SCRAM-SHA-256", f'{SCRAM_MODULE} required username="a";', 'needs username="..." and password'),
        ("SCRAM-SHA-256", f'{SCRAM_MODULE} required username="a" password="b" user_a="b";', "option 'user_a'"),
        ("SCRAM-SHA-256", f'{SCRAM_MODULE} required username="a" username="c" password="b";', "given twice"),
        ("SCRAM-SHA-256", f'{SCRAM_MODULE} required username="a" password "b";', 'name="value" pairs'),
        ("SCRAM-SHA-256", f"{SCRAM_MODULE} required username='a' password='hunter2';", "unexpected character"),
        ("GSSAPI", f'{SCRAM_MODULE} required username="a" password="b";', "supported are"),
    ],
)
def test_bad_jaas_lines_are_refused_without_quoting_the_password(mechanism: str, jaas: str, message: str) -> None:
    with pytest.raises(InvalidConfigError) as refused:
        SaslLogin.from_jaas(mechanism, jaas, "sasl.jaas.config")
    assert message in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_scram_client_matches_rfc_7677() -> None:
    client = ScramClient("SCRAM-SHA-256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert client.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = client.final(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert final == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")  # fmt: skip
    client.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(KafkaError, match="SCRAM signature does not match"):
        client.verify(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


@pytest.mark.parametrize(
    "server_first",
    [b"r=other,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", b"r=abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
     b"r=abcdef,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1", b"r=abcdef,i=4096"],
)  # fmt: skip
def test_scram_client_refuses_a_bad_server_first(server_first: bytes) -> None:
    with pytest.raises(scram.ScramError):
        ScramClient("SCRAM-SHA-256", "u", "p", nonce="abc").final(server_first)


class Users:
    def __init__(self, **passwords: str) -> None:
        self.creds = {
            u: {m: scram.make_credential(m, p) for m in ("SCRAM-SHA-256", "SCRAM-SHA-512")}
            for u, p in passwords.items()
        }

    async def get(self, user: str) -> dict[str, scram.Credential]:
        return dict(self.creds.get(user, {}))


class LoopbackConn:
    """A connection whose SASL requests go to a server-side ``SaslSession`` (no sockets)."""

    address = "broker-1:9093"

    def __init__(self, session: SaslSession) -> None:
        self.session = session
        self.calls: list[int] = []

    async def request(self, api: ApiKey, fields: dict[str, Any]) -> Any:
        self.calls.append(int(api))
        if api == ApiKey.SASL_HANDSHAKE:
            code, mechanisms = self.session.handshake(fields["mechanism"])
            return SimpleNamespace(error_code=code, mechanisms=mechanisms)
        answer = await self.session.authenticate(fields["auth_bytes"])
        return SimpleNamespace(error_code=answer.error_code, error_message=answer.message, auth_bytes=answer.auth_bytes)


@pytest.mark.asyncio
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
async def test_the_client_authenticates_to_tidelogs_server(mechanism: str) -> None:
    session = SaslSession(("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"), Users(broker="right"))  # type: ignore[arg-type]
    await SaslLogin(mechanism, "broker", "right").authenticate(LoopbackConn(session))  # type: ignore[arg-type]
    assert session.authenticated
    assert session.principal == "User:broker"


@pytest.mark.asyncio
async def test_refusals_are_kafka_errors() -> None:
    session = SaslSession(("SCRAM-SHA-512",), Users(broker="right"))  # type: ignore[arg-type]
    with pytest.raises(KafkaError) as refused:
        await SaslLogin("SCRAM-SHA-512", "broker", "wrong").authenticate(LoopbackConn(session))  # type: ignore[arg-type]
    assert refused.value.error_code == 58
    assert "as 'broker' to broker-1:9093" in str(refused.value)
    assert "wrong" not in str(refused.value)
    session = SaslSession(("SCRAM-SHA-512",), Users(broker="right"))  # type: ignore[arg-type]
    with pytest.raises(KafkaError) as refused:
        await SaslLogin("PLAIN", "broker", "right").authenticate(LoopbackConn(session))  # type: ignore[arg-type]
    assert refused.value.error_code == 33
    assert "offers SCRAM-SHA-512" in str(refused.value)


SASL_BROKER = {"listeners": "SASL_SSL://127.0.0.1:9093", "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN"}


def test_inter_broker_sasl_settings(tmp_path: Any) -> None:
    keystore_free = {**SASL_BROKER, "listeners": "SASL_PLAINTEXT://127.0.0.1:9093"}
    jaas = f'{SCRAM_MODULE} required username="broker" password="pw";'
    cfg = config.build({**keystore_free, "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
                        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": jaas})  # fmt: skip
    assert cfg.inter_broker_sasl == SaslLogin("SCRAM-SHA-512", "broker", "pw")
    assert "pw" not in repr(cfg.inter_broker_sasl)
    plain = f'{PLAIN_MODULE} required username="broker" password="pw2";'
    cfg = config.build({**keystore_free, "sasl.mechanism.inter.broker.protocol": "plain", "sasl.jaas.config": plain})
    assert cfg.inter_broker_sasl == SaslLogin("PLAIN", "broker", "pw2")
    assert config.build({}).inter_broker_sasl is None
    secret = tmp_path / "s.properties"
    secret.write_text(f"jaas={jaas}\n")
    provider = "org.apache.kafka.common.config.provider.FileConfigProvider"
    cfg = config.load(None, {**keystore_free, "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
                             "config.providers": "file", "config.providers.file.class": provider,
                             "sasl.jaas.config": f"${{file:{secret}:jaas}}"}, environ={})  # fmt: skip
    assert cfg.inter_broker_sasl == SaslLogin("SCRAM-SHA-512", "broker", "pw")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "set sasl.mechanism.inter.broker.protocol"),
        ({"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-256"}, "not enabled on listener SASL_PLAINTEXT"),
        ({"sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512"}, "the brokers' own login is missing"),
    ],
)
def test_half_inter_broker_sasl_settings_are_refused(extra: dict[str, str], message: str) -> None:
    props = {**SASL_BROKER, "listeners": "SASL_PLAINTEXT://127.0.0.1:9093", **extra}
    with pytest.raises(InvalidConfigError, match=message):
        config.build(props)
