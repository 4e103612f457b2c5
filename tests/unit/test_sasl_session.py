"""One connection's SASL state machine (broker/security/sasl.py) with in-memory credentials."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from tidelog.broker.security import sasl, scram
from tidelog.broker.security.scram import Credential


class Users:
    def __init__(self, users: dict[str, dict[str, Credential]]) -> None:
        self._users = users

    async def get(self, user: str) -> dict[str, Credential]:
        return dict(self._users.get(user, {}))

    async def users(self) -> dict[str, dict[str, Credential]]:
        return dict(self._users)

    async def set(self, user: str, mechanism: str, credential: Credential | None) -> None:
        raise AssertionError("not used")


CREDS = Users({"bob": {"SCRAM-SHA-256": scram.make_credential("SCRAM-SHA-256", "pw")}})


def test_only_the_handshake_and_authentication_before_authenticating() -> None:
    s = sasl.SaslSession(("PLAIN", "SCRAM-SHA-256"), CREDS)
    assert s.allows(sasl.API_VERSIONS)
    assert s.allows(sasl.SASL_HANDSHAKE)
    assert not s.allows(3)  # Metadata
    assert s.handshake("GSSAPI") == (sasl.UNSUPPORTED_SASL_MECHANISM, ["PLAIN", "SCRAM-SHA-256"])
    answer = asyncio.run(s.authenticate(b"\0bob\0pw"))
    assert (answer.error_code, answer.failed) == (sasl.ILLEGAL_SASL_STATE, True)  # no mechanism chosen yet
    assert s.handshake("PLAIN")[0] == 0
    assert s.handshake("PLAIN")[0] == sasl.ILLEGAL_SASL_STATE  # one handshake per connection
    answer = asyncio.run(s.authenticate(b"\0bob\0pw"))
    assert (answer.error_code, s.authenticated, s.principal) == (0, True, "User:bob")
    assert s.allows(3)
    assert asyncio.run(s.authenticate(b"\0bob\0pw")).error_code == sasl.ILLEGAL_SASL_STATE  # no re-authentication


def test_malformed_tokens_fail_as_bad_credentials() -> None:
    for mechanism, token in (("PLAIN", b"no-separators"), ("PLAIN", b"\xff\0bob\0pw"), ("SCRAM-SHA-256", b"x")):
        s = sasl.SaslSession(("PLAIN", "SCRAM-SHA-256"), CREDS)
        s.handshake(mechanism)
        answer = asyncio.run(s.authenticate(token))
        assert (answer.error_code, answer.failed, s.authenticated) == (sasl.SASL_AUTHENTICATION_FAILED, True, False)


@settings(max_examples=300, deadline=None)
@given(mechanism=st.sampled_from(["PLAIN", "SCRAM-SHA-256"]), tokens=st.lists(st.binary(max_size=300), max_size=4))
def test_any_tokens_fail_cleanly_and_never_authenticate(mechanism: str, tokens: list[bytes]) -> None:
    """Fuzzed SaslAuthenticate tokens: an answer every time (never an exception), never a success."""
    s = sasl.SaslSession(("PLAIN", "SCRAM-SHA-256"), CREDS)
    s.handshake(mechanism)
    for token in tokens:
        answer = asyncio.run(s.authenticate(token))
        assert answer.error_code in (0, sasl.SASL_AUTHENTICATION_FAILED, sasl.ILLEGAL_SASL_STATE)
        if answer.failed:
            break
    assert not s.authenticated
