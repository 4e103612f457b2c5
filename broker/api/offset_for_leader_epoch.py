"""OffsetForLeaderEpoch (23): where a leader epoch ended on this leader (KIP-101/279), for
followers deciding where to truncate and for clients validating their position after a leader
change (KIP-320). Answers the largest epoch <= the one asked for and its end offset, or
UNDEFINED (-1, -1) when the log knows no such epoch."""

from __future__ import annotations

from typing import Any

from tidelog.broker.api.context import TOPIC_AUTHORIZATION_FAILED, BrokerContext, Outcome, Reply
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.errors import KafkaError
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation

API_KEY = 23


def _answer(ctx: BrokerContext, topic: str, p: Any, allowed: bool) -> dict[str, Any]:
    index = int(p.partition)
    if not allowed:
        return dict(error_code=TOPIC_AUTHORIZATION_FAILED, partition=index, leader_epoch=-1, end_offset=-1)
    try:
        replica = ctx.leader(topic, index, int(messages.field_or(p, "current_leader_epoch", -1)))
    except KafkaError as exc:
        return dict(error_code=exc.error_code, partition=index, leader_epoch=-1, end_offset=-1)
    epoch, end = replica.epochs.end_offset_for(int(p.leader_epoch), replica.log.log_end_offset)
    return dict(error_code=0, partition=index, leader_epoch=epoch, end_offset=end)


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    request = messages.decode_request(API_KEY, header.api_version, body)
    follower = int(messages.field_or(request, "replica_id", -2)) != -1  # before v3: -2, a broker (as Kafka)
    topics = []
    for t in request.topics:  # followers need CLUSTER_ACTION, clients validating a position DESCRIBE
        allowed = (
            ctx.allowed_cluster(Operation.CLUSTER_ACTION)
            if follower
            else ctx.allowed_topic(Operation.DESCRIBE, t.topic)
        )
        topics.append(dict(topic=t.topic, partitions=[_answer(ctx, t.topic, p, allowed) for p in t.partitions]))
    response = messages.build(messages.response_type(API_KEY, header.api_version), throttle_time=0, topics=topics)
    return Reply.of(messages.encode_response(response))
