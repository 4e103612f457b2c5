"""Every API the broker advertises answers every version in its advertised range: a request built
from Kafka's own schemas (kio) for each (API, version), a response parsed back with them."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader
from logtesting import fresh_batch as client_batch
from rawkafka import body, fetch_fields, header, read_frame, send_frame
from tidelogbroker import RunningBroker

from tidelog.broker.api.registry import APIS

TOPIC = "every-version"
PARTITION = {"partition": 0, "partition_index": 0, "index": 0}


def fields_for(api_key: int, version: int) -> dict[str, Any]:
    """A superset of every version's fields; ``build`` keeps those the version has."""
    records = bytes(client_batch([b"v%d" % version]))
    per_key: dict[int, dict[str, Any]] = {
        0: dict(
            transactional_id=None,
            acks=1,
            timeout=5000,
            topic_data=[{"name": TOPIC, "partition_data": [{"index": 0, "records": records}]}],
        ),
        1: fetch_fields(TOPIC, min_bytes=0),
        2: dict(
            replica_id=-1,
            isolation_level=0,
            timeout=5000,
            topics=[
                {
                    "name": TOPIC,
                    "partitions": [
                        {"partition_index": 0, "current_leader_epoch": -1, "timestamp": -1, "max_num_offsets": 1}
                    ],
                }
            ],
        ),
        3: dict(
            topics=[{"name": TOPIC, "topic_id": None}],
            allow_auto_topic_creation=True,
            include_cluster_authorized_operations=False,
            include_topic_authorized_operations=False,
        ),
        18: dict(client_software_name="tidelog-test", client_software_version="1"),
        19: dict(
            timeout=5000,
            validate_only=True,
            topics=[
                {
                    "name": f"vo-{version}",
                    "num_partitions": 1,
                    "replication_factor": 1,
                    "assignments": [],
                    "configs": [],
                }
            ],
        ),
        20: dict(
            timeout=5000, topic_names=[f"missing-{version}"], topics=[{"name": f"missing-{version}", "topic_id": None}]
        ),
        21: dict(timeout=5000, topics=[{"name": TOPIC, "partitions": [{"partition_index": 0, "offset": 0}]}]),
        22: dict(transactional_id=None, transaction_timeout=60_000, producer_id=-1, producer_epoch=-1),
        23: dict(
            replica_id=-1,
            topics=[{"topic": TOPIC, "partitions": [{"partition": 0, "current_leader_epoch": -1, "leader_epoch": 0}]}],
        ),
        32: dict(
            include_synonyms=False,
            include_documentation=False,
            resources=[{"resource_type": 2, "resource_name": TOPIC, "configuration_keys": None}],
        ),
        33: dict(
            validate_only=True,
            resources=[
                {"resource_type": 2, "resource_name": TOPIC, "configs": [{"name": "retention.ms", "value": "86400000"}]}
            ],
        ),
        37: dict(timeout=5000, validate_only=True, topics=[{"name": TOPIC, "count": 4, "assignments": None}]),
        44: dict(
            validate_only=True,
            resources=[
                {
                    "resource_type": 2,
                    "resource_name": TOPIC,
                    "configs": [{"name": "retention.ms", "config_operation": 0, "value": "86400000"}],
                }
            ],
        ),
        60: dict(include_cluster_authorized_operations=False, endpoint_type=1),
        45: dict(
            timeout=5000,
            allow_replication_factor_change=True,
            topics=[{"name": TOPIC, "partitions": [{"partition_index": 0, "replicas": [0]}]}],
        ),
        46: dict(timeout=5000, topics=None),
        8: dict(
            group_id=f"g-{version}",
            generation_id_or_member_epoch=-1,
            generation_id=-1,
            member_id="",
            group_instance_id=None,
            retention_time=-1,
            topics=[
                {
                    "name": TOPIC,
                    "partitions": [
                        {
                            "partition_index": 0,
                            "committed_offset": 1,
                            "committed_leader_epoch": -1,
                            "committed_metadata": "m",
                            "commit_timestamp": -1,
                        }
                    ],
                }
            ],
        ),
        9: dict(
            group_id=f"g-{version}",
            topics=None,
            require_stable=False,
            groups=[{"group_id": f"g-{version}", "member_id": None, "member_epoch": -1, "topics": None}],
        ),
        10: dict(key="g", key_type=0, coordinator_keys=["g"]),
        11: dict(
            group_id=f"join-{version}",
            session_timeout=10_000,
            rebalance_timeout=10_000,
            member_id="",
            group_instance_id=None,
            protocol_type="consumer",
            protocols=[{"name": "range", "metadata": b""}],
            reason=None,
        ),
        12: dict(group_id="nobody", generation_id=1, member_id="ghost", group_instance_id=None),
        13: dict(
            group_id="nobody",
            member_id="ghost",
            members=[{"member_id": "ghost", "group_instance_id": None, "reason": None}],
        ),
        14: dict(
            group_id="nobody",
            generation_id=1,
            member_id="ghost",
            group_instance_id=None,
            protocol_type=None,
            protocol_name=None,
            assignments=[],
        ),
        15: dict(groups=[f"g-{version}"], include_authorized_operations=False),
        16: dict(states_filter=[], types_filter=[]),
        42: dict(groups_names=[f"missing-group-{version}"]),
        47: dict(group_id="missing-group", topics=[{"name": TOPIC, "partitions": [{"partition_index": 0}]}]),
        17: dict(mechanism="SCRAM-SHA-512"),
        36: dict(auth_bytes=b"n,,n=nobody,r=abc"),
        29: dict(
            resource_type_filter=2,
            resource_name_filter=None,
            pattern_type_filter=1,
            principal_filter=None,
            host_filter=None,
            operation=1,
            permission_type=1,
        ),
        30: dict(
            creations=[
                {
                    "resource_type": 2,
                    "resource_name": TOPIC,
                    "resource_pattern_type": 3,
                    "principal": "User:a",
                    "host": "*",
                    "operation": 3,
                    "permission_type": 3,
                }
            ]
        ),
        31: dict(
            filters=[
                {
                    "resource_type_filter": 2,
                    "resource_name_filter": TOPIC,
                    "pattern_type_filter": 3,
                    "principal_filter": None,
                    "host_filter": None,
                    "operation": 1,
                    "permission_type": 1,
                }
            ]
        ),
        50: dict(users=[{"name": f"nobody-{version}"}]),
        51: dict(deletions=[{"name": f"nobody-{version}", "mechanism": 2}], upsertions=[]),
    }
    return per_key[api_key]


# Requests that are right to fail: unknown members (25), MEMBER_ID_REQUIRED on a first join (79),
# deleting what does not exist (69).
# 45 on a lone broker: no other broker to move a replica to (INVALID_REPLICA_ASSIGNMENT).
# 17 and 36 on a PLAINTEXT listener: ILLEGAL_SASL_STATE (34); 50 and 51 for a user that does not
# exist: RESOURCE_NOT_FOUND (91). 29-31 without an authorizer: SECURITY_DISABLED (54).
EXPECTED_ERRORS = {11: {79}, 12: {25}, 13: {25}, 14: {25}, 42: {69}, 45: {39}, 47: {69}, 17: {34}, 36: {34}, 50: {91},
                   51: {91}, 29: {54}, 30: {54}, 31: {54}}  # fmt: skip

CASES = [
    (spec.key, v)
    for spec in APIS.values()
    for v in range(spec.min_version, spec.max_version + 1)
    if not (spec.key == 0 and v < 3)
]  # Produce v0-2: refused by design, tested in test_bad_input


@pytest.mark.parametrize(("api_key", "version"), CASES, ids=[f"{APIS[k].name}-v{v}" for k, v in CASES])
def test_every_advertised_version_answers(broker: RunningBroker, api_key: int, version: int) -> None:
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock:
        # the topic exists for every API that needs it (Metadata v4+ auto-creates; v0-3 always did)
        setup = header(3, 4, 99, False) + body(3, 4, topics=[{"name": TOPIC}], allow_auto_topic_creation=True)
        send_frame(sock, setup)
        assert read_frame(sock)
        flexible = bool(load_request_schema(api_key, version).__flexible__)
        send_frame(sock, header(api_key, version, 7, flexible) + body(api_key, version, **fields_for(api_key, version)))
        frame = read_frame(sock)
        assert frame, f"the broker closed the connection on {APIS[api_key].name} v{version}"
        assert struct.unpack(">i", frame[:4])[0] == 7
        start = 4 + (1 if flexible and api_key != 18 else 0)
        response, consumed = entity_reader(load_response_schema(api_key, version))(frame[start:], 0)
        assert consumed == len(frame) - start
        codes = _error_codes(response)
        allowed = {0, 3} | EXPECTED_ERRORS.get(api_key, set())
        assert codes <= allowed, f"{APIS[api_key].name} v{version} answered error codes {codes}: {response}"


def _error_codes(value: Any) -> set[int]:
    """Every error_code in a response, walking nested entities."""
    found: set[int] = set()
    if isinstance(value, tuple):
        for item in value:
            found |= _error_codes(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            if name.startswith("__"):
                continue
            field = getattr(value, name)
            if name == "error_code":
                found.add(int(getattr(field, "value", field)))
            else:
                found |= _error_codes(field)
    return found
