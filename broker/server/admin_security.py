"""The protection of the gRPC admin API (``admin.listener``), from broker properties in the style
of Kafka's ``ssl.*`` names, prefixed ``admin.`` (Kafka has no gRPC API, so these are Tidelog's):

- ``admin.ssl.keystore.location``: PEM file with the private key and certificate chain (Kafka's
  ``ssl.keystore.type=PEM``); turns TLS on. ``admin.ssl.key.password`` is accepted only to say that
  gRPC cannot use an encrypted key.
- ``admin.ssl.truststore.location``: PEM bundle of the CAs whose client certificates are accepted.
- ``admin.ssl.client.auth``: ``none`` (default) or ``required`` (mutual TLS: the operator and the
  CLI show certificates signed by the truststore's CAs). gRPC has no "requested".
- ``admin.token.file``: a file of bearer tokens (one per line, read again when it changes); every
  Admin call must carry one (``authorization: Bearer <token>``); the health service stays open.
- ``admin.health.listener``: ``HOST:PORT`` of a plain-gRPC port serving the health service alone,
  for probes that cannot speak TLS (the kubelet's gRPC probe) when the admin port does.

These are read from properties files and ``--set`` only, never from ``TIDELOG_*`` variables: the
CLI's and the operator's ``TIDELOG_ADMIN_TOKEN_FILE`` must not turn a broker's tokens on by accident.

Nothing set: plain gRPC, as before. Half a configuration (a truststore or client.auth without a
keystore, client.auth=required without a truststore, an unreadable file) stops the broker at start
with a message naming the setting. The files are checked with the SSL listeners' loaders (``tls``)
and then handed to gRPC as PEM bytes (``tidelog.broker.admin.transport``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tidelog.broker.admin.auth import TokenFile, TokenFileError
from tidelog.broker.admin.transport import AdminTlsError, ServerTls
from tidelog.broker.log.config import InvalidConfigError
from tidelog.broker.server import tls

PREFIX = "admin."
TLS_KEYS = frozenset(
    {
        "admin.ssl.keystore.type",
        "admin.ssl.keystore.location",
        "admin.ssl.key.password",
        "admin.ssl.keystore.password",
        "admin.ssl.truststore.type",
        "admin.ssl.truststore.location",
        "admin.ssl.client.auth",
    }
)
TOKEN_FILE = "admin.token.file"  # noqa: S105 - a setting's name, not a secret
HEALTH_LISTENER = "admin.health.listener"
KEYS = TLS_KEYS | {TOKEN_FILE, HEALTH_LISTENER}
WHAT = "admin API (admin.ssl.*)"


@dataclass(frozen=True)
class AdminSecurity:
    tls: ServerTls | None = None
    tokens: TokenFile | None = None
    health_listener: str = ""  # HOST:PORT of the plain health-only port ("" = none)

    def describe(self) -> str:
        """How the API is protected, for the start-up log line."""
        parts = []
        if self.tls is not None:
            parts.append("mutual TLS" if self.tls.require_client_auth else "TLS")
        if self.tokens is not None:
            parts.append(f"bearer token from {self.tokens.path}")
        return " + ".join(parts) or "no TLS, no token"


def build(props: Mapping[str, str]) -> AdminSecurity:
    """Validate the ``admin.ssl.*`` and ``admin.token.file`` settings; INVALID_CONFIG says what is wrong."""
    values = {k[len(PREFIX) :]: v for k, v in props.items() if k in TLS_KEYS and v != ""}
    client_auth = values.get("ssl.client.auth", "none").lower()
    if client_auth not in ("none", "required"):
        raise InvalidConfigError(
            f"admin.ssl.client.auth={client_auth}: none or required (gRPC cannot ask for a client certificate "
            "without requiring it)"
        )
    server_tls = None
    if values.get("ssl.keystore.location"):
        settings = tls.settings_for(values, "admin")
        tls.server_context(settings, "admin", what=WHAT)  # the SSL listeners' checks and messages
        try:
            keystore = Path(values["ssl.keystore.location"])
            required = client_auth == "required"
            server_tls = ServerTls.from_files(keystore, settings.truststore, require_client_auth=required)
        except AdminTlsError as exc:
            raise InvalidConfigError(f"{WHAT}: {exc}") from None
    elif values:
        named = ", ".join(PREFIX + k for k in sorted(values))
        raise InvalidConfigError(
            f"{named} set but no admin.ssl.keystore.location (the admin API's key and certificate): "
            "refusing to serve the admin API in plain text"
        )
    tokens = None
    if props.get(TOKEN_FILE):
        try:
            tokens = TokenFile(Path(props[TOKEN_FILE]))
        except TokenFileError as exc:
            raise InvalidConfigError(f"{TOKEN_FILE}: {exc}") from None
    health = props.get(HEALTH_LISTENER, "")
    host, colon, port = health.rpartition(":")
    if health and (not colon or not host or not port.isdigit()):
        raise InvalidConfigError(f"{HEALTH_LISTENER}={health}: expected HOST:PORT")
    return AdminSecurity(server_tls, tokens, health)
