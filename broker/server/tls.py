"""TLS for SSL listeners and for the broker's own connections to other brokers, configured with
Kafka's ``ssl.*`` names (PEM files: Kafka's ``ssl.keystore.type=PEM``).

- ``ssl.keystore.location``: the broker's private key and certificate chain in one PEM file
  (``ssl.key.password`` if the key is encrypted). JKS and PKCS12 keystores are refused with a hint.
- ``ssl.truststore.location`` (a PEM bundle) or ``ssl.truststore.certificates`` (PEM text): the CAs
  whose client certificates are accepted, and that the other brokers' certificates must chain to.
- ``ssl.client.auth``: ``none`` (default), ``requested`` or ``required`` (mutual TLS).
- ``ssl.enabled.protocols``: default ``TLSv1.2,TLSv1.3``; older versions are refused.
- ``ssl.cipher.suites``: OpenSSL names for TLS 1.2 (TLS 1.3's suites are OpenSSL's).
- ``ssl.endpoint.identification.algorithm``: ``https`` (default: the other broker's certificate must
  name the host connected to) or empty (no host-name check).

Any of them may be set for one listener as ``listener.name.<name>.ssl.<...>`` (the name in lower
case, as Kafka spells it), which wins over the plain key for that listener. A client's principal on
an SSL listener is its certificate's subject (``CN=...,O=...``), or ANONYMOUS without one.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tidelog.broker.log.config import InvalidConfigError

KEYS = frozenset(
    {
        "ssl.keystore.type",
        "ssl.keystore.location",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.truststore.type",
        "ssl.truststore.location",
        "ssl.truststore.certificates",
        "ssl.truststore.password",
        "ssl.client.auth",
        "ssl.enabled.protocols",
        "ssl.protocol",
        "ssl.cipher.suites",
        "ssl.endpoint.identification.algorithm",
    }
)
_PER_LISTENER = re.compile(r"^listener\.name\.([a-z0-9_-]+)\.(ssl\..+)$")
_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def is_tls_key(name: str) -> bool:
    """A key this module owns (plain ``ssl.*`` or ``listener.name.<name>.ssl.*``)."""
    match = _PER_LISTENER.match(name)
    return (match.group(2) if match else name) in KEYS


@dataclass(frozen=True)
class TlsSettings:
    """One listener's (or the inter-broker client's) TLS settings, validated."""

    keystore: Path | None = None
    key_password: str | None = None
    truststore: Path | None = None
    truststore_pem: str | None = None
    client_auth: str = "none"
    versions: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ciphers: str | None = None
    check_hostname: bool = True


def settings_for(props: Mapping[str, str], listener: str) -> TlsSettings:
    """The ``ssl.*`` settings of ``listener``: its ``listener.name.<name>.ssl.*`` over the plain ones."""
    prefix = f"listener.name.{listener.lower()}."
    values = {k: v for k, v in props.items() if k in KEYS}
    values.update({k[len(prefix) :]: v for k, v in props.items() if k.startswith(prefix) and k[len(prefix) :] in KEYS})
    for kind in ("ssl.keystore.type", "ssl.truststore.type"):
        if values.get(kind, "PEM").upper() != "PEM":
            raise InvalidConfigError(
                f"listener {listener}: {kind}={values[kind]}: only PEM files are read "
                "(convert: openssl pkcs12 -in store.p12 -nodes, or keytool -importkeystore to PKCS12 first)"
            )
    client_auth = values.get("ssl.client.auth", "none").lower()
    if client_auth not in CLIENT_AUTH:
        raise InvalidConfigError(f"listener {listener}: ssl.client.auth={client_auth}: none, requested or required")
    versions = tuple(v.strip() for v in values.get("ssl.enabled.protocols", "TLSv1.2,TLSv1.3").split(",") if v.strip())
    old = [v for v in versions if v not in _VERSIONS]
    if old or not versions:
        raise InvalidConfigError(
            f"listener {listener}: ssl.enabled.protocols={','.join(versions)}: TLSv1.2 and TLSv1.3 only"
        )
    identification = values.get("ssl.endpoint.identification.algorithm", "https").lower()
    if identification not in ("https", ""):
        raise InvalidConfigError(f"ssl.endpoint.identification.algorithm={identification}: https or empty")
    return TlsSettings(
        keystore=Path(values["ssl.keystore.location"]) if values.get("ssl.keystore.location") else None,
        key_password=values.get("ssl.key.password") or values.get("ssl.keystore.password") or None,
        truststore=Path(values["ssl.truststore.location"]) if values.get("ssl.truststore.location") else None,
        truststore_pem=values.get("ssl.truststore.certificates") or None,
        client_auth=client_auth,
        versions=versions,
        ciphers=values.get("ssl.cipher.suites") or None,
        check_hostname=identification == "https",
    )


def _versions(ctx: ssl.SSLContext, s: TlsSettings) -> None:
    chosen = sorted(_VERSIONS[v] for v in s.versions)
    ctx.minimum_version, ctx.maximum_version = chosen[0], chosen[-1]
    if s.ciphers:
        try:
            ctx.set_ciphers(s.ciphers.replace(",", ":"))
        except ssl.SSLError as exc:
            raise InvalidConfigError(f"ssl.cipher.suites={s.ciphers}: {exc}") from None


def _load_keystore(ctx: ssl.SSLContext, s: TlsSettings, what: str) -> None:
    assert s.keystore is not None
    try:
        ctx.load_cert_chain(s.keystore, password=s.key_password)
    except FileNotFoundError:
        raise InvalidConfigError(f"{what}: ssl.keystore.location {s.keystore}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise InvalidConfigError(
            f"{what}: ssl.keystore.location {s.keystore}: not a PEM private key + certificate chain "
            f"(or a wrong ssl.key.password): {exc}"
        ) from None


def _load_truststore(ctx: ssl.SSLContext, s: TlsSettings, what: str) -> None:
    try:
        if s.truststore is not None:
            ctx.load_verify_locations(cafile=s.truststore)
        if s.truststore_pem:
            ctx.load_verify_locations(cadata=s.truststore_pem)
    except FileNotFoundError:
        raise InvalidConfigError(f"{what}: ssl.truststore.location {s.truststore}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise InvalidConfigError(f"{what}: the truststore holds no PEM certificate: {exc}") from None


def server_context(s: TlsSettings, listener: str, *, what: str | None = None) -> ssl.SSLContext:
    """The SSL listener's context; a missing or unreadable key is INVALID_CONFIG at start. ``what``
    names the settings' owner in messages (default ``listener <name>``; the admin API uses it too)."""
    what = what or f"listener {listener}"
    if s.keystore is None:
        raise InvalidConfigError(f"{what} is SSL but has no ssl.keystore.location (its key and certificate)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions(ctx, s)
    _load_keystore(ctx, s, what)
    ctx.verify_mode = CLIENT_AUTH[s.client_auth]
    if s.client_auth != "none":
        if s.truststore is None and not s.truststore_pem:
            raise InvalidConfigError(f"{what}: ssl.client.auth={s.client_auth} needs a truststore (the clients' CAs)")
        _load_truststore(ctx, s, what)
    return ctx


def client_context(s: TlsSettings, listener: str) -> ssl.SSLContext:
    """The context this broker connects to other brokers' ``listener`` with (replica fetchers):
    it verifies their certificates against the truststore and shows its own keystore (mutual TLS)."""
    what = f"inter-broker listener {listener}"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _versions(ctx, s)
    ctx.check_hostname = s.check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    if s.truststore is None and not s.truststore_pem:
        ctx.load_default_certs()
    else:
        _load_truststore(ctx, s, what)
    if s.keystore is not None:
        _load_keystore(ctx, s, what)
    return ctx


_RDN_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
              "localityName": "L", "stateOrProvinceName": "ST", "domainComponent": "DC"}  # fmt: skip


def principal(peercert: Mapping[str, object] | None) -> str:
    """Kafka's SSL principal: ``User:`` + the certificate subject as ``CN=a,OU=b,...`` (most specific
    first, as Kafka's default rule prints it), or ``User:ANONYMOUS`` without a certificate."""
    subject = (peercert or {}).get("subject")
    if not subject:
        return "User:ANONYMOUS"
    parts = [f"{_RDN_NAMES.get(k, k)}={v}" for rdn in subject for k, v in rdn]  # type: ignore[attr-defined]
    return "User:" + ",".join(reversed(parts))
