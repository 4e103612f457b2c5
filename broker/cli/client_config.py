"""``--command-config FILE``: a Kafka client properties file for ``tidelog topics|produce|consume``,
as Kafka's own tools take it (and as the operator writes ``client.properties`` into a User's Secret).

Read: ``security.protocol`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), ``sasl.mechanism``
(SCRAM-SHA-512, SCRAM-SHA-256, PLAIN) with the login in ``sasl.jaas.config`` (Kafka's JAAS line) or
librdkafka's ``sasl.username``/``sasl.password``; TLS trust in ``ssl.truststore.location`` (PEM) or
``ssl.ca.location``, a client certificate in ``ssl.keystore.location`` (PEM key + chain) or
``ssl.certificate.location`` + ``ssl.key.location``, ``ssl.endpoint.identification.algorithm``
(``https``, the default, checks the broker's name; empty does not); ``bootstrap.servers`` when no
``--bootstrap`` is given. Other keys (``client.id``, ``acks``...) are left to the command's flags.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from tidelog.broker.client.connection import Authenticator
from tidelog.broker.log.config import InvalidConfigError
from tidelog.broker.security.sasl_client import SaslLogin
from tidelog.broker.server.config import read_properties

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class ClientSecurity:
    ssl: ssl.SSLContext | None = None
    authenticate: Authenticator | None = None
    bootstrap: str | None = None


def _tls(props: dict[str, str], path: Path) -> ssl.SSLContext:
    ca = props.get("ssl.truststore.location") or props.get("ssl.ca.location")
    context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    if props.get("ssl.endpoint.identification.algorithm", "https").lower() != "https":
        context.check_hostname = False
    cert = props.get("ssl.keystore.location") or props.get("ssl.certificate.location")
    if cert:
        try:
            context.load_cert_chain(cert, props.get("ssl.key.location") or None)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidConfigError(f"{path}: client certificate {cert}: {exc}") from None
    return context


def load(path: Path) -> ClientSecurity:
    """The connection security ``path`` describes; InvalidConfigError says what is wrong."""
    props = read_properties(path)
    protocol = props.get("security.protocol", "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise InvalidConfigError(f"{path}: security.protocol={protocol}: one of {', '.join(PROTOCOLS)}")
    context = _tls(props, path) if protocol.endswith("SSL") else None
    login = None
    if protocol.startswith("SASL_"):
        mechanism = props.get("sasl.mechanism", "").upper()
        if not mechanism:
            raise InvalidConfigError(f"{path}: sasl.mechanism is required with security.protocol={protocol}")
        if "sasl.jaas.config" in props:
            login = SaslLogin.from_jaas(mechanism, props["sasl.jaas.config"], f"{path}: sasl.jaas.config")
        elif props.get("sasl.username") and "sasl.password" in props:
            login = SaslLogin.from_jaas(
                mechanism, _jaas(mechanism, props["sasl.username"], props["sasl.password"]), str(path)
            )
        else:
            raise InvalidConfigError(f"{path}: SASL needs sasl.jaas.config (or sasl.username and sasl.password)")
    return ClientSecurity(context, login.authenticate if login is not None else None, props.get("bootstrap.servers"))


def _jaas(mechanism: str, user: str, password: str) -> str:
    module = (
        "org.apache.kafka.common.security.plain.PlainLoginModule"
        if mechanism == "PLAIN"
        else "org.apache.kafka.common.security.scram.ScramLoginModule"
    )
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    return f'{module} required username="{user}" password="{quoted}";'
