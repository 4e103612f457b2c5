"""A group request for a group this broker does not coordinate gets NOT_COORDINATOR (16). On a lone
broker every group is local, so this drives the check the replicated cluster will wire to the
leadership of the group's ``__consumer_offsets`` partition."""

from __future__ import annotations

import asyncio
import struct
import tempfile
from pathlib import Path
from typing import Any

from inprocess import feed, new_connection
from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader
from rawkafka import body, header

REQUESTS: list[tuple[int, int, dict[str, Any]]] = [
    (
        11,
        9,
        dict(
            group_id="g",
            session_timeout=10_000,
            rebalance_timeout=10_000,
            member_id="m",
            group_instance_id=None,
            protocol_type="consumer",
            protocols=[{"name": "range", "metadata": b""}],
            reason=None,
        ),
    ),
    (
        14,
        5,
        dict(
            group_id="g",
            generation_id=1,
            member_id="m",
            group_instance_id=None,
            protocol_type=None,
            protocol_name=None,
            assignments=[],
        ),
    ),
    (12, 4, dict(group_id="g", generation_id=1, member_id="m", group_instance_id=None)),
    (13, 5, dict(group_id="g", members=[{"member_id": "m", "group_instance_id": None, "reason": None}])),
    (
        8,
        9,
        dict(
            group_id="g",
            generation_id_or_member_epoch=-1,
            member_id="",
            group_instance_id=None,
            topics=[
                {
                    "name": "t",
                    "partitions": [
                        {
                            "partition_index": 0,
                            "committed_offset": 1,
                            "committed_leader_epoch": -1,
                            "committed_metadata": "",
                        }
                    ],
                }
            ],
        ),
    ),
    (
        9,
        9,
        dict(require_stable=False, groups=[{"group_id": "g", "member_id": None, "member_epoch": -1, "topics": None}]),
    ),
    (15, 5, dict(groups=["g"], include_authorized_operations=False)),
    (42, 2, dict(groups_names=["g"])),
    (47, 0, dict(group_id="g", topics=[{"name": "t", "partitions": [{"partition_index": 0}]}])),
]


def _codes(value: Any) -> set[int]:
    found: set[int] = set()
    if isinstance(value, tuple):
        for item in value:
            found |= _codes(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            if not name.startswith("__"):
                field = getattr(value, name)
                found |= {int(getattr(field, "value", field))} if name == "error_code" else _codes(field)
    return found


def test_every_group_api_answers_not_coordinator_for_a_foreign_group() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        conn, transport, logs = new_connection(Path(tmp))
        conn.ctx.topics.create("t", 1, 1, {})
        conn.ctx.groups.owns = lambda _group_id: False
        try:

            async def run() -> None:
                for i, (key, version, fields) in enumerate(REQUESTS):
                    flexible = bool(load_request_schema(key, version).__flexible__)
                    payload = header(key, version, i, flexible) + body(key, version, **fields)
                    feed(conn, struct.pack(">i", len(payload)) + payload)
                    for _ in range(5):
                        await asyncio.sleep(0)

            asyncio.run(run())
            out = bytes(transport.written)
            pos = 0
            for key, version, _fields in REQUESTS:
                (size,) = struct.unpack_from(">i", out, pos)
                frame = out[pos + 4 : pos + 4 + size]
                pos += 4 + size
                flexible = bool(load_request_schema(key, version).__flexible__)
                response, _ = entity_reader(load_response_schema(key, version))(frame[4 + flexible :], 0)
                assert _codes(response) == {16}, (key, response)
            assert not transport.aborted
        finally:
            logs.close_sync()
