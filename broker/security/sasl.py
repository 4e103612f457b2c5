"""One connection's SASL authentication on a SASL_PLAINTEXT or SASL_SSL listener (KIP-152 framing:
SaslHandshake v1, then SaslAuthenticate requests carrying the mechanism's tokens).

Mechanisms: SCRAM-SHA-256, SCRAM-SHA-512 (two rounds) and PLAIN (one round, the password checked
against the user's SCRAM credential, so no password is ever stored). Until the client is
authenticated only ApiVersions, SaslHandshake and SaslAuthenticate are served (``allows``).
Re-authentication (KIP-368) is not offered: the session lifetime answered is 0 (none), and a second
handshake on an authenticated connection is ILLEGAL_SASL_STATE.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidelog.broker.security import scram
from tidelog.broker.security.credentials import CredentialStore

SUPPORTED = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 33, 34, 58


@dataclass
class Answer:
    error_code: int = 0
    message: str | None = None
    auth_bytes: bytes = b""
    failed: bool = False  # authentication failed: answer, then close the connection


class SaslSession:
    def __init__(self, mechanisms: tuple[str, ...], credentials: CredentialStore) -> None:
        self.mechanisms = mechanisms
        self.credentials = credentials
        self.mechanism: str | None = None
        self.principal = "User:ANONYMOUS"
        self.user: str | None = None  # the user name the client gave (for logs; never its secret)
        self.authenticated = False
        self._scram: scram.ScramServer | None = None

    def allows(self, api_key: int) -> bool:
        return self.authenticated or api_key in (API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE)

    def handshake(self, mechanism: str) -> tuple[int, list[str]]:
        if self.authenticated or self.mechanism is not None:
            return ILLEGAL_SASL_STATE, list(self.mechanisms)
        if mechanism not in self.mechanisms:
            return UNSUPPORTED_SASL_MECHANISM, list(self.mechanisms)
        self.mechanism = mechanism
        if mechanism.startswith("SCRAM-"):
            self._scram = scram.ScramServer(mechanism)
        return 0, list(self.mechanisms)

    async def authenticate(self, token: bytes) -> Answer:
        if self.authenticated or self.mechanism is None:
            return Answer(ILLEGAL_SASL_STATE, "SaslAuthenticate before SaslHandshake or after authentication",
                          failed=True)  # fmt: skip
        try:
            if self.mechanism == "PLAIN":
                return await self._plain(token)
            return await self._scram_step(token)
        except (scram.ScramError, UnicodeDecodeError, ValueError):
            return self._failed()

    def _failed(self) -> Answer:
        return Answer(
            SASL_AUTHENTICATION_FAILED,
            "Authentication failed during authentication due to invalid credentials with SASL mechanism "
            f"{self.mechanism}",
            failed=True,
        )

    def _done(self, user: str, auth_bytes: bytes = b"") -> Answer:
        self.authenticated, self.principal = True, f"User:{user}"
        return Answer(auth_bytes=auth_bytes)

    async def _plain(self, token: bytes) -> Answer:
        authzid, user, password = token.decode("utf-8").split("\0")
        self.user = user
        if authzid and authzid != user:
            return self._failed()
        creds = await self.credentials.get(user)
        for mech in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
            if mech in creds and scram.check_password(mech, creds[mech], password):
                return self._done(user)
        return self._failed()

    async def _scram_step(self, token: bytes) -> Answer:
        assert self._scram is not None
        assert self.mechanism is not None
        if not self._scram.username:
            user = self.user = self._scram.first(token)
            credential = (await self.credentials.get(user)).get(self.mechanism)
            return Answer(auth_bytes=self._scram.server_first(credential))
        final = self._scram.final(token)
        return self._done(self._scram.username, final)
