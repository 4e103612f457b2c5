"""CreateTopics (19), DeleteTopics (20), CreatePartitions (37): topic life cycle, with Kafka's
checks and codes (TOPIC_ALREADY_EXISTS, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR,
INVALID_CONFIG, INVALID_TOPIC_EXCEPTION, UNKNOWN_TOPIC_OR_PARTITION)."""

from __future__ import annotations

import uuid
from typing import Any

from tidelog.broker.api.context import BrokerContext, Outcome, Reply
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.errors import KafkaError, UnknownTopicOrPartitionError, for_code
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation

ZERO_ID = uuid.UUID(int=0)


async def create_topics(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    request = messages.decode_request(19, version, body)
    validate_only = bool(messages.field_or(request, "validate_only", False))
    results: list[dict[str, Any]] = []
    for topic in request.topics:
        partitions = int(topic.num_partitions)
        rf = int(topic.replication_factor)
        partitions = ctx.settings.num_partitions if partitions == -1 else partitions
        rf = ctx.settings.default_replication_factor if rf == -1 else rf
        configs = {c.name: c.value for c in topic.configs if c.value is not None}
        result: dict[str, Any] = dict(
            name=topic.name,
            topic_id=ZERO_ID,
            error_code=0,
            error_message=None,
            num_partitions=partitions,
            replication_factor=rf,
            configs=[],
        )
        try:
            if not ctx.allowed_cluster(Operation.CREATE):
                ctx.check_topic(Operation.CREATE, topic.name)
            assignment = [list(a.broker_ids) for a in topic.assignments] if topic.assignments else None
            if assignment:
                rf = len(assignment[0])
                partitions = len(assignment)
            if validate_only:
                ctx.topics.check_create(topic.name, partitions, rf, configs)
            else:
                info = await ctx.topics.create_topic(topic.name, partitions, rf, configs, assignment)
                result["topic_id"] = info.topic_id
        except KafkaError as exc:
            result.update(error_code=exc.error_code, error_message=str(exc), num_partitions=-1, replication_factor=-1)
        results.append(result)
    response = messages.build(messages.response_type(19, version), throttle_time=0, topics=results)
    return Reply.of(messages.encode_response(response))


async def delete_topics(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    request = messages.decode_request(20, version, body)
    if version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    results: list[dict[str, Any]] = []
    for wanted_name, topic_id in wanted:
        name = wanted_name
        if name is None and topic_id is not None:
            name = next((t.name for t in ctx.topics.topics.values() if t.topic_id == topic_id), None)
        try:
            if name is None:
                raise messages_error(100, f"no topic has id {topic_id}")
            ctx.check_topic(Operation.DELETE, name)
            info = await ctx.topics.delete_topic(name)
            ctx.replicas.forget_topic(name)
            for partition in range(info.partitions):
                if ctx.logs.get(name, partition) is not None:
                    ctx.logs.delete(name, partition)
                ctx.producers.forget((name, partition))
            results.append(dict(name=name, topic_id=info.topic_id, error_code=0, error_message=None))
        except KafkaError as exc:
            results.append(
                dict(name=name, topic_id=topic_id or ZERO_ID, error_code=exc.error_code, error_message=str(exc))
            )
    response = messages.build(messages.response_type(20, version), throttle_time=0, responses=results)
    return Reply.of(messages.encode_response(response))


async def create_partitions(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    request = messages.decode_request(37, version, body)
    validate_only = bool(request.validate_only)
    results: list[dict[str, Any]] = []
    for topic in request.topics:
        try:
            ctx.check_topic(Operation.ALTER, topic.name)
            if topic.name not in ctx.topics.topics:
                raise UnknownTopicOrPartitionError(f"topic {topic.name!r} does not exist")
            assignment = [list(a.broker_ids) for a in topic.assignments] if topic.assignments else None
            await ctx.topics.create_partitions(topic.name, int(topic.count), validate_only, assignment)
            results.append(dict(name=topic.name, error_code=0, error_message=None))
        except KafkaError as exc:
            results.append(dict(name=topic.name, error_code=exc.error_code, error_message=str(exc)))
    response = messages.build(messages.response_type(37, version), throttle_time=0, results=results)
    return Reply.of(messages.encode_response(response))


def messages_error(code: int, message: str) -> KafkaError:
    return for_code(code)(message)
