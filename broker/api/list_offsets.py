"""ListOffsets (2): earliest (-2), latest (-1), max timestamp (-3, v7+), or the first offset at or
after a timestamp."""

from __future__ import annotations

from typing import Any

from tidelog.broker.api.context import TOPIC_AUTHORIZATION_FAILED, BrokerContext, Outcome, Reply
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.errors import KafkaError
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation

API_KEY = 2
LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3


def _lookup(ctx: BrokerContext, topic: str, partition: int, timestamp: int, epoch: int) -> dict[str, Any]:
    if not ctx.allowed_topic(Operation.DESCRIBE, topic):
        return dict(partition_index=partition, error_code=TOPIC_AUTHORIZATION_FAILED, timestamp=-1, offset=-1,
                    leader_epoch=-1)  # fmt: skip
    try:
        replica = ctx.leader(topic, partition, epoch)
    except KafkaError as exc:
        return dict(partition_index=partition, error_code=exc.error_code, timestamp=-1, offset=-1, leader_epoch=-1)
    plog = replica.log
    found: tuple[int, int] | None
    if timestamp == LATEST:
        found = (replica.high_watermark, -1)
    elif timestamp == EARLIEST:
        found = (plog.log_start_offset, -1)
    elif timestamp == MAX_TIMESTAMP:
        found = plog.offset_of_max_timestamp()
    else:
        found = plog.offset_for_timestamp(timestamp)
    offset, ts = found if found is not None else (-1, -1)
    if offset >= replica.high_watermark and timestamp not in (LATEST, EARLIEST):
        offset, ts = -1, -1  # not visible to consumers yet
    return dict(partition_index=partition, error_code=0, timestamp=ts, offset=offset, leader_epoch=replica.leader_epoch)


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    request = messages.decode_request(API_KEY, header.api_version, body)
    topics = [
        dict(
            name=t.name,
            partitions=[
                _lookup(
                    ctx,
                    t.name,
                    int(p.partition_index),
                    int(p.timestamp),
                    int(messages.field_or(p, "current_leader_epoch", -1)),
                )
                for p in t.partitions
            ],
        )
        for t in request.topics
    ]
    response = messages.build(messages.response_type(API_KEY, header.api_version), throttle_time=0, topics=topics)
    return Reply.of(messages.encode_response(response))
