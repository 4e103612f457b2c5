"""The admin API's protection settings (``admin.ssl.*``, ``admin.token.file``): defaults, what each
combination turns on, and half configurations refused with the setting named."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from certs import Pki, make_pki

from tidelog.broker.admin.auth import TokenFile, TokenFileError
from tidelog.broker.admin.transport import AdminTlsError, ClientTls, split_keystore
from tidelog.broker.log.config import InvalidConfigError
from tidelog.broker.server import config


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_nothing_set_is_plain_grpc_as_before() -> None:
    security = config.build({}).admin_security
    assert (security.tls, security.tokens) == (None, None)
    assert security.describe() == "no TLS, no token"


def test_tls_mutual_tls_and_token(pki: Pki, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("a-token-of-enough-length\n")
    tls_only = config.build({"admin.ssl.keystore.location": str(pki.broker)}).admin_security
    assert tls_only.tls is not None
    assert not tls_only.tls.require_client_auth
    assert tls_only.describe() == "TLS"
    both = config.build({
        "admin.ssl.keystore.location": str(pki.broker), "admin.ssl.truststore.location": str(pki.ca),
        "admin.ssl.client.auth": "REQUIRED", "admin.token.file": str(token),
    }).admin_security  # fmt: skip
    assert both.tls is not None
    assert both.tls.require_client_auth
    assert both.describe() == f"mutual TLS + bearer token from {token}"
    assert "PRIVATE KEY" not in repr(both)  # the key stays out of reprs (and so out of logs)


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"admin.ssl.truststore.location": "{ca}"}, "admin.ssl.truststore.location set but no admin.ssl.keystore"),
        ({"admin.ssl.client.auth": "required"}, "admin.ssl.client.auth set but no admin.ssl.keystore.location"),
        ({"admin.ssl.keystore.location": "{broker}", "admin.ssl.client.auth": "required"}, "needs a truststore"),
        ({"admin.ssl.keystore.location": "{broker}", "admin.ssl.client.auth": "requested"}, "none or required"),
        ({"admin.ssl.keystore.location": "{ca}"}, "not a PEM private key"),
        ({"admin.ssl.keystore.location": "{client_cert}"}, "not a PEM private key"),
        ({"admin.ssl.keystore.location": "/nope.pem"}, "/nope.pem: no such file"),
        ({"admin.ssl.keystore.location": "{broker}", "admin.ssl.keystore.type": "PKCS12"}, "only PEM files"),
        ({"admin.ssl.cipher.suites": "x"}, "unknown broker config: admin.ssl.cipher.suites"),
        ({"admin.token.file": "/no/token"}, "admin.token.file: admin token file /no/token: no such file"),
        ({"admin.health.listener": "9999"}, "admin.health.listener=9999: expected HOST:PORT"),
    ],
)
def test_half_configurations_are_refused(pki: Pki, props: dict[str, str], message: str) -> None:
    paths = {"ca": pki.ca, "broker": pki.broker, "client_cert": pki.client_cert}
    with pytest.raises(InvalidConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        config.build({k: v.format(**paths) for k, v in props.items()})


def test_an_encrypted_key_is_refused_with_the_command_that_decrypts_it(pki: Pki, tmp_path: Path) -> None:
    encrypted = tmp_path / "enc.pem"
    subprocess.run(["openssl", "pkey", "-in", str(pki.broker), "-aes256", "-passout", "pass:secret-pass",
                    "-out", str(encrypted)], check=True, capture_output=True)  # fmt: skip
    encrypted.write_text(encrypted.read_text() + (pki.broker.parent / "broker.crt").read_text())
    with pytest.raises(InvalidConfigError, match=r"encrypted, which gRPC cannot read.*openssl pkey"):
        config.build({"admin.ssl.keystore.location": str(encrypted), "admin.ssl.key.password": "secret-pass"})


@pytest.mark.parametrize(("content", "message"), [("", "empty"), ("short\n", "shorter than 16"),
                                                   ("has a space in it!!\n", "holds a space")])  # fmt: skip
def test_unusable_token_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(TokenFileError, match=message):
        TokenFile(path)


def test_token_check_answers_why(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("\n  first-token-0123456789  \nsecond-token-0123456789\n")
    tokens = TokenFile(path)
    assert tokens.first() == "first-token-0123456789"
    assert tokens.check("Bearer first-token-0123456789") is None
    assert tokens.check("bearer second-token-0123456789") is None
    assert tokens.check(None) is not None
    assert "malformed" in (tokens.check("first-token-0123456789") or "")
    assert tokens.check("Bearer first-token-012345678") == "invalid admin token"
    assert "token" not in repr(tokens).replace("TokenFile", "").replace(str(path), "")


def test_pem_splitting_and_client_tls_errors(pki: Pki, tmp_path: Path) -> None:
    key, chain = split_keystore(pki.broker.read_bytes(), "broker")
    assert key is not None
    assert b"PRIVATE KEY" in key
    assert chain.count(b"BEGIN CERTIFICATE") == 1
    with pytest.raises(AdminTlsError, match="no private key with it"):
        ClientTls(pki.ca, pki.client_cert).credentials()
    with pytest.raises(AdminTlsError, match="a client key without a client certificate"):
        ClientTls(pki.ca, None, pki.client_key).credentials()
    (tmp_path / "junk.pem").write_text("not pem")
    with pytest.raises(AdminTlsError, match="no PEM block"):
        ClientTls(tmp_path / "junk.pem").credentials()
