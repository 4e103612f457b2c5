"""Bad group requests get Kafka's codes and leave the group healthy: unknown members, stale
generations, unknown topics, oversized metadata, a rebalance in progress."""

from __future__ import annotations

import socket

from rawkafka import call
from tidelogbroker import RunningBroker


def _code(value: object) -> int:
    return int(getattr(value, "value", value))


def test_group_protocol_errors(broker: RunningBroker) -> None:
    group = "errors-group"
    with socket.create_connection(("127.0.0.1", broker.port), timeout=15) as sock:
        call(
            sock,
            3,
            12,
            topics=[{"name": "errors-topic", "topic_id": None}],
            allow_auto_topic_creation=True,
            include_topic_authorized_operations=False,
        )
        join = dict(
            group_id=group,
            session_timeout=10_000,
            rebalance_timeout=10_000,
            group_instance_id=None,
            protocol_type="consumer",
            protocols=[{"name": "range", "metadata": b""}],
            reason=None,
        )
        first = call(sock, 11, 9, member_id="", **join)
        assert _code(first.error_code) == 79  # MEMBER_ID_REQUIRED (KIP-394)
        joined = call(sock, 11, 9, member_id=first.member_id, **join)
        assert _code(joined.error_code) == 0
        member, generation = joined.member_id, joined.generation_id
        synced = call(
            sock,
            14,
            5,
            group_id=group,
            generation_id=generation,
            member_id=member,
            group_instance_id=None,
            protocol_type="consumer",
            protocol_name="range",
            assignments=[{"member_id": member, "assignment": b"\x00\x01"}],
        )
        assert _code(synced.error_code) == 0
        assert synced.assignment == b"\x00\x01"

        def heartbeat(member_id: str, gen: int) -> int:
            return _code(
                call(
                    sock, 12, 4, group_id=group, generation_id=gen, member_id=member_id, group_instance_id=None
                ).error_code
            )

        assert heartbeat("stranger", generation) == 25  # UNKNOWN_MEMBER_ID
        assert heartbeat(member, generation - 1) == 22  # ILLEGAL_GENERATION
        assert heartbeat(member, generation) == 0

        def commit(member_id: str, gen: int, topic: str, metadata: str = "") -> int:
            response = call(
                sock,
                8,
                9,
                group_id=group,
                generation_id_or_member_epoch=gen,
                member_id=member_id,
                group_instance_id=None,
                topics=[
                    {
                        "name": topic,
                        "partitions": [
                            {
                                "partition_index": 0,
                                "committed_offset": 0,
                                "committed_leader_epoch": -1,
                                "committed_metadata": metadata,
                            }
                        ],
                    }
                ],
            )
            return _code(response.topics[0].partitions[0].error_code)

        assert commit("stranger", generation, "errors-topic") == 25
        assert commit(member, generation + 5, "errors-topic") == 22
        assert commit(member, generation, "no-such-topic") == 3  # UNKNOWN_TOPIC_OR_PARTITION
        assert commit(member, generation, "errors-topic", "m" * 5000) == 12  # OFFSET_METADATA_TOO_LARGE
        assert commit(member, generation, "errors-topic") == 0
        assert commit("", -1, "errors-topic") == 25  # a "simple" commit into a live group
        assert heartbeat(member, generation) == 0  # the group is still healthy
        left = call(
            sock, 13, 5, group_id=group, members=[{"member_id": member, "group_instance_id": None, "reason": "test"}]
        )
        assert _code(left.members[0].error_code) == 0
        assert commit("", -1, "errors-topic") == 0  # an empty group takes simple commits (admin tools)
