"""SaslHandshake (17) and SaslAuthenticate (36): their answers. On a SASL listener the connection
runs the exchange itself (it holds the per-connection state, tidelog.broker.security.sasl); a
PLAINTEXT or SSL listener answers ILLEGAL_SASL_STATE, as Kafka does."""

from __future__ import annotations

from tidelog.broker.api.context import BrokerContext, Outcome, Reply
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.frames import RequestHeader

ILLEGAL_SASL_STATE = 34


def handshake_reply(version: int, error_code: int, mechanisms: list[str]) -> Reply:
    response = messages.build(messages.response_type(17, version), error_code=error_code, mechanisms=mechanisms)
    return Reply.of(messages.encode_response(response))


def authenticate_reply(version: int, error_code: int, message: str | None, auth_bytes: bytes) -> Reply:
    response = messages.build(
        messages.response_type(36, version),
        error_code=error_code,
        error_message=message,
        auth_bytes=auth_bytes,
        session_lifetime=0,  # no re-authentication required (KIP-368 not offered)
    )
    return Reply.of(messages.encode_response(response))


def handshake_not_here(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    return handshake_reply(header.api_version, ILLEGAL_SASL_STATE, [])


def authenticate_not_here(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    return authenticate_reply(header.api_version, ILLEGAL_SASL_STATE, "this listener does not use SASL", b"")
