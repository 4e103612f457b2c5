"""DeleteRecords (21): move a partition's log start offset forward (-1: to the high watermark)."""

from __future__ import annotations

from typing import Any

from tidelog.broker.api.context import BrokerContext, Outcome, Reply
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.errors import KafkaError, OffsetOutOfRangeError
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation


def _delete(ctx: BrokerContext, topic: str, partition: int, offset: int) -> dict[str, Any]:
    try:
        ctx.check_topic(Operation.DELETE, topic)
        replica = ctx.leader(topic, partition)
        plog = replica.log
        hw = replica.high_watermark
        target = hw if offset == -1 else offset
        if target < 0 or target > hw:
            raise OffsetOutOfRangeError(f"offset {offset} is beyond the high watermark {hw}")
        low = plog.advance_log_start_offset(target)
        return dict(partition_index=partition, low_watermark=low, error_code=0)
    except KafkaError as exc:
        return dict(partition_index=partition, low_watermark=-1, error_code=exc.error_code)


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    request = messages.decode_request(21, header.api_version, body)
    topics = [
        dict(
            name=t.name, partitions=[_delete(ctx, t.name, int(p.partition_index), int(p.offset)) for p in t.partitions]
        )
        for t in request.topics
    ]
    response = messages.build(messages.response_type(21, header.api_version), throttle_time=0, topics=topics)
    return Reply.of(messages.encode_response(response))
