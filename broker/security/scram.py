"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka runs them, server side, and the
salted credentials it keeps (never a password).

A credential is (salt, iterations, StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey =
HMAC(SaltedPassword, "Server Key")), SaltedPassword = PBKDF2(password, salt, iterations). The
exchange: client-first ``n,,n=user,r=cnonce`` -> server-first ``r=cnonce+snonce,s=salt,i=n`` ->
client-final ``c=biws,r=...,p=proof`` -> server-final ``v=signature``. Iterations: 4096 at least
(Kafka's minimum), 16384 at most. Usernames are SASLnames (``=2C`` for ',' and ``=3D`` for '=').
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384
# Kafka's ScramMechanism ids (DescribeUserScramCredentials / AlterUserScramCredentials)
MECHANISM_IDS = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}


class ScramError(Exception):
    """The exchange failed: bad syntax, unknown user, wrong proof (the message names no secret)."""


@dataclass(frozen=True)
class Credential:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def to_json(self) -> dict[str, object]:
        b64 = base64.b64encode
        return {"salt": b64(self.salt).decode(), "iterations": self.iterations,
                "stored_key": b64(self.stored_key).decode(), "server_key": b64(self.server_key).decode()}  # fmt: skip

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Credential:
        b64 = base64.b64decode
        return cls(b64(str(d["salt"])), int(str(d["iterations"])), b64(str(d["stored_key"])), b64(str(d["server_key"])))


def _hmac(algo: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, algo).digest()


def salted_credential(mechanism: str, salted_password: bytes, salt: bytes, iterations: int) -> Credential:
    algo = MECHANISMS[mechanism]
    client_key = _hmac(algo, salted_password, b"Client Key")
    return Credential(
        salt, iterations, hashlib.new(algo, client_key).digest(), _hmac(algo, salted_password, b"Server Key")
    )


def make_credential(
    mechanism: str, password: str, iterations: int = MIN_ITERATIONS, salt: bytes | None = None
) -> Credential:
    if mechanism not in MECHANISMS:
        raise ScramError(f"unknown mechanism {mechanism}")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ScramError(f"iterations {iterations}: between {MIN_ITERATIONS} and {MAX_ITERATIONS}")
    salt = salt if salt is not None else secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(MECHANISMS[mechanism], password.encode(), salt, iterations)
    return salted_credential(mechanism, salted, salt, iterations)


def check_password(mechanism: str, credential: Credential, password: str) -> bool:
    """PLAIN checked against a SCRAM credential: the password's StoredKey must match."""
    again = make_credential(mechanism, password, credential.iterations, credential.salt)
    return hmac.compare_digest(again.stored_key, credential.stored_key)


def _attributes(message: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in message.split(","):
        key, sep, value = part.partition("=")
        if not sep or len(key) != 1:
            raise ScramError(f"malformed SCRAM attribute {part[:20]!r}")
        out[key] = value
    return out


def _sasl_name(name: str) -> str:
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise ScramError("malformed username")
    return name.replace("=2C", ",").replace("=3D", "=")


class ScramServer:
    """One server-side exchange. ``first`` -> (username, server-first); the caller looks the
    credential up and calls ``final`` with it (None: unknown user, which fails like a wrong proof)."""

    def __init__(self, mechanism: str) -> None:
        if mechanism not in MECHANISMS:
            raise ScramError(f"unknown mechanism {mechanism}")
        self.mechanism = mechanism
        self.algo = MECHANISMS[mechanism]
        self.username = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._credential: Credential | None = None

    def first(self, client_first: bytes) -> str:
        """Parse client-first; returns the username (then call ``server_first``)."""
        text = client_first.decode("utf-8", errors="strict")
        gs2, _, bare = text.partition(",")
        authzid, _, bare = bare.partition(",")
        if gs2 not in ("n", "y") or not bare:
            raise ScramError("channel binding is not supported, or a malformed client-first message")
        attrs = _attributes(bare)
        if "n" not in attrs or "r" not in attrs or not attrs["r"]:
            raise ScramError("client-first message without a username or nonce")
        self.username = _sasl_name(attrs["n"])
        if authzid and _sasl_name(authzid.removeprefix("a=")) != self.username:
            raise ScramError("authorization id differs from the username")
        self._client_first_bare = bare
        self._nonce = attrs["r"]
        return self.username

    def server_first(self, credential: Credential | None, nonce_suffix: str | None = None) -> bytes:
        # An unknown user gets a made-up salt and is refused at the final step, as Kafka does.
        self._credential = credential
        salt = credential.salt if credential else hashlib.sha256(self.username.encode() + b"tidelog").digest()
        iterations = credential.iterations if credential else MIN_ITERATIONS
        self._nonce += nonce_suffix or base64.b64encode(secrets.token_bytes(18)).decode()
        self._server_first = f"r={self._nonce},s={base64.b64encode(salt).decode()},i={iterations}"
        return self._server_first.encode()

    def final(self, client_final: bytes) -> bytes:
        """Check the client's proof; returns server-final (``v=...``) or raises ScramError."""
        text = client_final.decode("utf-8", errors="strict")
        attrs = _attributes(text)
        without_proof, _, _ = text.rpartition(",p=")
        if attrs.get("r") != self._nonce or "p" not in attrs or "c" not in attrs:
            raise ScramError("nonce mismatch or a malformed client-final message")
        if self._credential is None:
            raise ScramError("authentication failed")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        client_signature = _hmac(self.algo, self._credential.stored_key, auth_message)
        try:
            proof = base64.b64decode(attrs["p"], validate=True)
        except ValueError:
            raise ScramError("malformed proof") from None
        if len(proof) != len(client_signature):
            raise ScramError("authentication failed")
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self.algo, client_key).digest(), self._credential.stored_key):
            raise ScramError("authentication failed")
        server_signature = _hmac(self.algo, self._credential.server_key, auth_message)
        return b"v=" + base64.b64encode(server_signature)
