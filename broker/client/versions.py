"""API keys and the version ranges this client speaks; negotiation against a broker's ApiVersions.

The rule (KIP-511 and every Kafka client): per API use ``min(our max, broker max)``, provided it is
not below ``max(our min, broker min)``. Our ranges follow the recommended first advertisement in
``shared/notes/kafka-protocol.md`` (the ones Tidelog's broker serves), capped by what kio knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum

from tidelog.broker.client.errors import NoCommonVersionError


class ApiKey(IntEnum):
    """Kafka API keys the client uses."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    SASL_HANDSHAKE = 17
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    OFFSET_FOR_LEADER_EPOCH = 23
    DESCRIBE_CONFIGS = 32
    SASL_AUTHENTICATE = 36
    CREATE_PARTITIONS = 37
    INCREMENTAL_ALTER_CONFIGS = 44


# (min, max) this client can build and parse. Above these maxima the request shapes change in ways
# the client does not use yet (topic ids instead of names in Produce 13 / Fetch 13, ...).
CLIENT_RANGES: Mapping[ApiKey, tuple[int, int]] = {
    ApiKey.PRODUCE: (3, 11),
    ApiKey.FETCH: (4, 12),
    ApiKey.LIST_OFFSETS: (1, 7),
    ApiKey.METADATA: (1, 12),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (2, 4),
    ApiKey.API_VERSIONS: (0, 3),
    ApiKey.SASL_HANDSHAKE: (1, 1),  # v1: the tokens follow in SaslAuthenticate requests (KIP-152)
    ApiKey.SASL_AUTHENTICATE: (0, 2),
    ApiKey.CREATE_TOPICS: (2, 7),
    ApiKey.DELETE_TOPICS: (1, 6),
    ApiKey.DESCRIBE_CONFIGS: (1, 4),
    ApiKey.CREATE_PARTITIONS: (0, 3),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
}


def negotiate(api: ApiKey, broker: Mapping[int, tuple[int, int]]) -> int:
    """The version to use for ``api`` with a broker advertising ``broker`` (api key -> (min, max))."""
    ours = CLIENT_RANGES[api]
    theirs = broker.get(int(api))
    if theirs is None:
        raise NoCommonVersionError(f"the broker does not advertise {api.name} (key {int(api)})")
    version = min(ours[1], theirs[1])
    if version < max(ours[0], theirs[0]):
        raise NoCommonVersionError(
            f"{api.name}: the client speaks v{ours[0]}-{ours[1]}, the broker v{theirs[0]}-{theirs[1]}"
        )
    return version
