"""TLS settings (broker/server/tls.py): Kafka's ssl.* names, per-listener overrides, principals."""

from __future__ import annotations

import pytest

from tidelog.broker.log.config import InvalidConfigError
from tidelog.broker.server import tls


def test_per_listener_keys_win_over_the_plain_ones() -> None:
    props = {
        "ssl.keystore.location": "/etc/tidelog/broker.pem",
        "ssl.client.auth": "none",
        "listener.name.mtls.ssl.client.auth": "required",
        "listener.name.mtls.ssl.truststore.location": "/etc/tidelog/ca.pem",
        "ssl.enabled.protocols": "TLSv1.3",
    }
    mtls = tls.settings_for(props, "MTLS")
    plain = tls.settings_for(props, "TLS")
    assert (mtls.client_auth, str(mtls.truststore), mtls.versions) == ("required", "/etc/tidelog/ca.pem", ("TLSv1.3",))
    assert (plain.client_auth, plain.truststore) == ("none", None)
    assert str(plain.keystore) == "/etc/tidelog/broker.pem"
    assert tls.is_tls_key("listener.name.mtls.ssl.client.auth")
    assert not tls.is_tls_key("listener.name.mtls.sasl.enabled.mechanisms")
    assert not tls.is_tls_key("ssl.no.such.key")


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"ssl.client.auth": "maybe"}, "none, requested or required"),
        ({"ssl.enabled.protocols": "TLSv1,TLSv1.2"}, "TLSv1.2 and TLSv1.3 only"),
        ({"ssl.truststore.type": "PKCS12"}, "only PEM files are read"),
        ({"ssl.endpoint.identification.algorithm": "dns"}, "https or empty"),
    ],
)
def test_bad_settings_are_refused(props: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        tls.settings_for(props, "SSL")


def test_principals_are_the_certificate_subject_as_kafka_prints_it() -> None:
    cert = {"subject": ((("organizationName", "acme"),), (("commonName", "alice"),))}
    assert tls.principal(cert) == "User:CN=alice,O=acme"
    assert tls.principal(None) == "User:ANONYMOUS"
    assert tls.principal({}) == "User:ANONYMOUS"
