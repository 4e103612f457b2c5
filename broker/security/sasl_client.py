"""The client side of SASL, for a broker's own connections to other brokers (replica fetchers) on a
SASL_PLAINTEXT or SASL_SSL inter-broker listener: PLAIN and SCRAM-SHA-256/512 (RFC 5802 client,
the server's signature checked), over SaslHandshake v1 + SaslAuthenticate (KIP-152), and the
login read from Kafka's JAAS setting.

Configuration, Kafka's names: ``sasl.mechanism.inter.broker.protocol`` (no default: Kafka's GSSAPI
is not offered) and the login in ``listener.name.<listener>.<mechanism>.sasl.jaas.config`` or
``sasl.jaas.config``, e.g.::

    org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="...";

The JAAS line is parsed strictly (one login module matching the mechanism, the ``required`` flag,
``username`` and ``password`` and nothing else, a final ``;``); messages never quote it, as it holds
the password. ``${file:...}`` / ``${env:...}`` config providers are resolved before this sees it.

Neighbours: ``scram`` (the RFC's primitives and the server side), ``sasl`` (the server's session),
``tidelog.broker.client.connection`` (which runs ``SaslLogin.authenticate`` after ApiVersions).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from tidelog.broker.client.connection import BrokerConnection
from tidelog.broker.client.versions import ApiKey
from tidelog.broker.log.config import InvalidConfigError
from tidelog.broker.protocol.errors import for_code
from tidelog.broker.security import scram

LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
_TOKEN = re.compile(r'\s*(?:(?P<word>[A-Za-z_$][\w.$-]*)|(?P<quoted>"(?:[^"\\]|\\.)*")|(?P<punct>[=;]))')
SASL_AUTHENTICATION_FAILED = 58


def _tokens(text: str, what: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise InvalidConfigError(f"{what}: unexpected character at position {pos} (values must be double-quoted)")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "quoted":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append((kind, value))
        pos = match.end()
    return out


@dataclass(frozen=True)
class SaslLogin:
    """A broker's own SASL login to the other brokers. The password never appears in a repr."""

    mechanism: str
    username: str
    password: str = field(repr=False)

    @classmethod
    def from_jaas(cls, mechanism: str, jaas: str, what: str) -> SaslLogin:
        """Parse Kafka's ``sasl.jaas.config`` value for ``mechanism`` (``what`` names the setting)."""
        if mechanism not in LOGIN_MODULES:
            raise InvalidConfigError(f"sasl.mechanism.inter.broker.protocol={mechanism}: supported are "
                                     + ", ".join(LOGIN_MODULES))  # fmt: skip
        tokens = _tokens(jaas, what)
        if len(tokens) < 3 or tokens[0][0] != "word" or tokens[1] != ("word", "required"):
            raise InvalidConfigError(
                f'{what}: expected \'{LOGIN_MODULES[mechanism]} required username="..." password="...";\''
            )
        if tokens[0][1] != LOGIN_MODULES[mechanism]:
            raise InvalidConfigError(
                f"{what}: login module {tokens[0][1]}: {mechanism} needs {LOGIN_MODULES[mechanism]}"
            )
        if tokens[-1] != ("punct", ";"):
            raise InvalidConfigError(f"{what}: the login module's options must end with ';'")
        options: dict[str, str] = {}
        rest = tokens[2:-1]
        if len(rest) % 3:
            raise InvalidConfigError(f'{what}: options are name="value" pairs')
        for i in range(0, len(rest), 3):
            (k_kind, name), eq, (v_kind, value) = rest[i], rest[i + 1], rest[i + 2]
            if k_kind != "word" or eq != ("punct", "=") or v_kind not in ("quoted", "word"):
                raise InvalidConfigError(f'{what}: options are name="value" pairs')
            if name not in ("username", "password"):
                raise InvalidConfigError(
                    f"{what}: option {name!r}: only username and password are read "
                    "(users are SCRAM credentials, made with kafka-configs --alter --entity-type users)"
                )
            if name in options:
                raise InvalidConfigError(f"{what}: option {name} given twice")
            options[name] = value
        if not options.get("username") or "password" not in options:
            raise InvalidConfigError(f'{what}: needs username="..." and password="..."')
        return cls(mechanism, options["username"], options["password"])

    async def authenticate(self, conn: BrokerConnection) -> None:
        """SaslHandshake then SaslAuthenticate round(s) on a fresh connection; a refusal raises the
        Kafka error (SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM, ...)."""
        where = f"SASL {self.mechanism} as {self.username!r} to {conn.address}"
        answer = await conn.request(ApiKey.SASL_HANDSHAKE, {"mechanism": self.mechanism})
        if int(answer.error_code):
            offered = ", ".join(answer.mechanisms) or "none"
            raise for_code(int(answer.error_code))(f"{where}: the broker offers {offered}")
        if self.mechanism == "PLAIN":
            await self._round(conn, f"\0{self.username}\0{self.password}".encode(), where)
            return
        client = ScramClient(self.mechanism, self.username, self.password)
        server_first = await self._round(conn, client.first(), where)
        try:
            client_final = client.final(server_first)
        except (scram.ScramError, UnicodeDecodeError, ValueError) as exc:
            raise for_code(SASL_AUTHENTICATION_FAILED)(f"{where}: {exc}") from None
        client.verify(await self._round(conn, client_final, where), where)

    @staticmethod
    async def _round(conn: BrokerConnection, token: bytes, where: str) -> bytes:
        answer = await conn.request(ApiKey.SASL_AUTHENTICATE, {"auth_bytes": token})
        if int(answer.error_code):
            raise for_code(int(answer.error_code))(f"{where}: {answer.error_message or 'refused'}")
        return bytes(answer.auth_bytes)


def _sasl_name(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


class ScramClient:
    """One client-side SCRAM exchange (RFC 5802 section 3): ``first`` -> ``final(server_first)`` ->
    ``verify(server_final)``; the salted password is computed once per exchange."""

    def __init__(self, mechanism: str, username: str, password: str, nonce: str | None = None) -> None:
        if mechanism not in scram.MECHANISMS:
            raise scram.ScramError(f"unknown mechanism {mechanism}")
        self.algo = scram.MECHANISMS[mechanism]
        self.mechanism = mechanism
        self._password = password
        self._nonce = nonce or base64.b64encode(secrets.token_bytes(24)).decode()
        self._first_bare = f"n={_sasl_name(username)},r={self._nonce}"
        self._server_signature = b""

    def first(self) -> bytes:
        return f"n,,{self._first_bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        text = server_first.decode("utf-8")
        attrs = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        nonce, salt, iterations = attrs.get("r", ""), attrs.get("s"), attrs.get("i", "")
        if not nonce.startswith(self._nonce) or nonce == self._nonce or salt is None or not iterations.isdigit():
            raise scram.ScramError("a malformed server-first message (nonce, salt or iterations)")
        if not scram.MIN_ITERATIONS <= int(iterations) <= scram.MAX_ITERATIONS:
            raise scram.ScramError(
                f"the server asks for {iterations} iterations ({scram.MIN_ITERATIONS} to {scram.MAX_ITERATIONS})"
            )
        salted = hashlib.pbkdf2_hmac(self.algo, self._password.encode(), base64.b64decode(salt), int(iterations))
        credential = scram.salted_credential(self.mechanism, salted, base64.b64decode(salt), int(iterations))
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode()
        client_key = hmac.new(salted, b"Client Key", self.algo).digest()
        signature = hmac.new(credential.stored_key, auth_message, self.algo).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = hmac.new(credential.server_key, auth_message, self.algo).digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes, where: str = "SCRAM") -> None:
        """The server proved it holds the credential (``v=`` matches), or ``SaslAuthenticationFailed``."""
        text = server_final.decode("utf-8", errors="replace")
        if text.startswith("e="):
            raise for_code(SASL_AUTHENTICATION_FAILED)(f"{where}: the server refused: {text[2:]}")
        try:
            signature = base64.b64decode(text.removeprefix("v="), validate=True) if text.startswith("v=") else b""
        except ValueError:
            signature = b""
        if not self._server_signature or not hmac.compare_digest(signature, self._server_signature):
            raise for_code(SASL_AUTHENTICATION_FAILED)(
                f"{where}: the server's SCRAM signature does not match (it does not hold the credential)"
            )
