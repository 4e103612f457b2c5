"""Produce (0): append each partition's record set to its log and answer per partition.

v0-2 are advertised (older librdkafka turns compression off otherwise) but refused with
UNSUPPORTED_VERSION, as Kafka 4.0.1+ does. zstd needs v7+. acks=0 gets no response at all. On a
lone broker acks=-1 is satisfied by the leader's own append (the ISR is the leader).
"""

from __future__ import annotations

import logging

from tidelog.broker.api.context import BrokerContext, Outcome, Reply
from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol import codecs, produce
from tidelog.broker.protocol.errors import KafkaError, UnknownTopicOrPartitionError
from tidelog.broker.protocol.frames import RequestHeader

log = logging.getLogger(__name__)

UNSUPPORTED_VERSION = 35
INVALID_REQUIRED_ACKS = 21
INVALID_TXN_STATE = 48
UNSUPPORTED_COMPRESSION_TYPE = 76
CORRUPT_MESSAGE = 2


def _uses_zstd(records: memoryview) -> bool:
    pos = 0
    while pos + rb.HEADER_SIZE <= len(records):
        if records[pos + rb.ATTRIBUTES_OFFSET + 1] & rb.COMPRESSION_MASK == codecs.ZSTD:
            return True
        pos += int.from_bytes(records[pos + 8 : pos + 12], "big", signed=True) + rb.LOG_OVERHEAD
        if pos <= 0:
            break
    return False


def _append(
    ctx: BrokerContext, topic: str, partition: produce.PartitionData, version: int
) -> produce.PartitionResponse:
    index = partition.partition
    records = partition.records
    if records is None or len(records) == 0:
        return produce.PartitionResponse(index, CORRUPT_MESSAGE, error_message="no records")
    if version < 7 and _uses_zstd(records):
        return produce.PartitionResponse(
            index, UNSUPPORTED_COMPRESSION_TYPE, error_message="zstd needs Produce v7 or later"
        )
    try:
        plog = ctx.partition_log(topic, index)
        info = ctx.producers.append((topic, index), plog, records, leader_epoch=0)
    except KafkaError as exc:
        log.info("produce to %s-%d refused: %s", topic, index, exc)
        return produce.PartitionResponse(index, exc.error_code, error_message=str(exc))
    if not info.duplicate:
        ctx.waiters.notify(topic, index)
        ctx.observe("produced", (topic, info.records, info.bytes))
    return produce.PartitionResponse(index, 0, info.first_offset, info.log_append_time, info.log_start_offset)


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    request = produce.decode_request(body, version, header.flexible)
    results: list[tuple[str, list[produce.PartitionResponse]]] = []
    refuse: tuple[int, str] | None = None
    if version < 3:
        refuse = (UNSUPPORTED_VERSION, "Produce v0-2 (message formats v0/v1) is not supported; use v3+")
    elif request.acks not in (0, 1, -1):
        refuse = (INVALID_REQUIRED_ACKS, f"acks={request.acks}: must be 0, 1 or -1")
    elif request.transactional_id is not None:
        refuse = (INVALID_TXN_STATE, "transactions are not supported by this broker yet")
    for topic in request.topics:
        answers: list[produce.PartitionResponse] = []
        if refuse is None and topic.name not in ctx.topics.topics:
            try:
                if ctx.auto_create(topic.name) is None:
                    raise UnknownTopicOrPartitionError(f"topic {topic.name!r} does not exist")
            except KafkaError as exc:
                answers = [
                    produce.PartitionResponse(p.partition, exc.error_code, error_message=str(exc))
                    for p in topic.partitions
                ]
        if not answers:
            for partition in topic.partitions:
                if refuse is not None:
                    answers.append(produce.PartitionResponse(partition.partition, refuse[0], error_message=refuse[1]))
                else:
                    answers.append(_append(ctx, topic.name, partition, version))
        results.append((topic.name, answers))
    if request.acks == 0 and refuse is None:
        return None
    return Reply.of(produce.encode_response(results, version, header.flexible))
