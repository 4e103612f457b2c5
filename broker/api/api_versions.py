"""ApiVersions (18): the versions of every API this broker implements, from the registry.

An ApiVersions request of a version we do not know is answered in the v0 format with
UNSUPPORTED_VERSION and our ranges (KIP-511), so the client can retry with one we know.
"""

from __future__ import annotations

from tidelog.broker.api.context import BrokerContext, Outcome, Reply
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.protocol.wire import I16, I32

API_KEY = 18
UNSUPPORTED_VERSION = 35


def _ranges() -> list[tuple[int, int, int]]:
    from tidelog.broker.api import registry  # noqa: PLC0415 - the registry imports this module

    return registry.version_ranges()


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    if version >= 3:
        messages.decode_request(API_KEY, version, body)  # client software name/version: validated only
    response = messages.build(
        messages.response_type(API_KEY, version),
        error_code=0,
        api_keys=[dict(api_key=k, min_version=lo, max_version=hi) for k, lo, hi in _ranges()],
        throttle_time=0,
        supported_features=[],
        finalized_features_epoch=-1,
        finalized_features=[],
        zk_migration_ready=False,
    )
    return Reply.of(messages.encode_response(response))


def unsupported_version_body() -> bytes:
    """The v0-format answer to an ApiVersions request of an unknown version."""
    ranges = _ranges()
    return (
        I16.pack(UNSUPPORTED_VERSION)
        + I32.pack(len(ranges))
        + b"".join(I16.pack(k) + I16.pack(lo) + I16.pack(hi) for k, lo, hi in ranges)
    )
