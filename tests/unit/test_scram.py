"""SCRAM (broker/security/scram.py) against RFC 7677's SCRAM-SHA-256 example and its own client."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from tidelog.broker.security.scram import (
    Credential,
    ScramError,
    ScramServer,
    check_password,
    make_credential,
)


def test_rfc_7677_example() -> None:
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    cred = make_credential("SCRAM-SHA-256", "pencil", 4096, salt)
    server = ScramServer("SCRAM-SHA-256")
    assert server.first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO") == "user"
    first = server.server_first(cred, nonce_suffix="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    assert first == b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    final = server.final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                         b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")  # fmt: skip
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _client_final(mech: str, password: str, client_first_bare: str, server_first: bytes) -> bytes:
    algo = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mech]
    attrs = dict(p.split("=", 1) for p in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(algo, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", algo).digest()
    without_proof = f"c=biws,r={attrs['r']}"
    auth = f"{client_first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.new(hashlib.new(algo, client_key).digest(), auth, algo).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_right_and_wrong_passwords(mech: str) -> None:
    cred = make_credential(mech, "s3cret", 8192)
    assert Credential.from_json(cred.to_json()) == cred
    for password, ok in (("s3cret", True), ("wrong", False)):
        server = ScramServer(mech)
        server.first(b"n,,n=alice,r=abc")
        first = server.server_first(cred)
        final = _client_final(mech, password, "n=alice,r=abc", first)
        if ok:
            assert server.final(final).startswith(b"v=")
        else:
            with pytest.raises(ScramError, match="authentication failed"):
                server.final(final)
    assert check_password(mech, cred, "s3cret")
    assert not check_password(mech, cred, "s3cret!")


def test_unknown_users_and_bad_messages_fail_without_telling_which() -> None:
    server = ScramServer("SCRAM-SHA-512")
    server.first(b"n,,n=nobody,r=xyz")
    first = server.server_first(None)
    with pytest.raises(ScramError, match="authentication failed"):
        server.final(_client_final("SCRAM-SHA-512", "any", "n=nobody,r=xyz", first))
    for bad in (b"p=tls-unique,,n=a,r=b", b"n,,r=b", b"n,,n=a", b"garbage", b"n,,n=a=b,r=c"):
        with pytest.raises(ScramError):
            ScramServer("SCRAM-SHA-256").first(bad)
    with pytest.raises(ScramError, match="iterations"):
        make_credential("SCRAM-SHA-256", "x", 100)
