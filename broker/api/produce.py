"""Produce (0): append each partition's record set to its log and answer per partition.

v0-2 are advertised (older librdkafka turns compression off otherwise) but refused with
UNSUPPORTED_VERSION, as Kafka 4.0.1+ does. zstd needs v7+. acks=0 gets no response at all. Only
the partition's leader appends (NOT_LEADER_OR_FOLLOWER otherwise). acks=-1 needs an ISR of at
least ``min.insync.replicas`` (NOT_ENOUGH_REPLICAS) and is answered once the high watermark passes
the records; on a lone broker (the ISR is the leader) that is at once.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tidelog.broker.api.context import TOPIC_AUTHORIZATION_FAILED, BrokerContext, Outcome, Reply
from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol import codecs, produce
from tidelog.broker.protocol.errors import KafkaError, UnknownTopicOrPartitionError
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation

log = logging.getLogger(__name__)

UNSUPPORTED_VERSION = 35
INVALID_REQUIRED_ACKS = 21
INVALID_TXN_STATE = 48
UNSUPPORTED_COMPRESSION_TYPE = 76
CORRUPT_MESSAGE = 2
REQUEST_TIMED_OUT = 7


def _uses_zstd(records: memoryview) -> bool:
    pos = 0
    while pos + rb.HEADER_SIZE <= len(records):
        if records[pos + rb.ATTRIBUTES_OFFSET + 1] & rb.COMPRESSION_MASK == codecs.ZSTD:
            return True
        pos += int.from_bytes(records[pos + 8 : pos + 12], "big", signed=True) + rb.LOG_OVERHEAD
        if pos <= 0:
            break
    return False


Wait = tuple[int, int, "asyncio.Future[None]"]  # (topic index, partition index, until replicated)


def _append(
    ctx: BrokerContext, topic: str, partition: produce.PartitionData, version: int, acks: int, waits: list[Any]
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
        replica = ctx.leader(topic, index)
        if acks == -1:
            ctx.replicas.check_acks_all(replica)
        info = ctx.producers.append((topic, index), replica.log, records, leader_epoch=replica.leader_epoch)
    except KafkaError as exc:
        log.info("produce to %s-%d refused: %s", topic, index, exc)
        return produce.PartitionResponse(index, exc.error_code, error_message=str(exc))
    if not info.duplicate:
        ctx.replicas.appended(replica)
        ctx.observe("produced", (topic, info.records, info.bytes))
    end = replica.log.log_end_offset  # covers the records (and, for a duplicate, the originals)
    if acks == -1 and replica.high_watermark < end:
        waits.append(replica.wait_for(end))
    return produce.PartitionResponse(index, 0, info.first_offset, info.log_append_time, info.log_start_offset)


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome | asyncio.Future[Outcome]:
    version = header.api_version
    request = produce.decode_request(body, version, header.flexible)
    results: list[tuple[str, list[produce.PartitionResponse]]] = []
    waits: list[Any] = []
    refuse: tuple[int, str] | None = None
    if version < 3:
        refuse = (UNSUPPORTED_VERSION, "Produce v0-2 (message formats v0/v1) is not supported; use v3+")
    elif request.acks not in (0, 1, -1):
        refuse = (INVALID_REQUIRED_ACKS, f"acks={request.acks}: must be 0, 1 or -1")
    elif request.transactional_id is not None:  # (before its authorization: transactions are not served)
        refuse = (INVALID_TXN_STATE, "transactions are not supported by this broker yet")
    for topic in request.topics:
        answers: list[produce.PartitionResponse] = []
        if refuse is None and not ctx.allowed_topic(Operation.WRITE, topic.name):
            denied = f"{ctx.principal} may not write to topic {topic.name}"
            answers = [
                produce.PartitionResponse(p.partition, TOPIC_AUTHORIZATION_FAILED, error_message=denied)
                for p in topic.partitions
            ]
        elif refuse is None and topic.name not in ctx.topics.topics:
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
                    before = len(waits)
                    answers.append(_append(ctx, topic.name, partition, version, request.acks, waits))
                    if len(waits) > before:
                        waits[-1] = (len(results), len(answers) - 1, waits[-1])
        results.append((topic.name, answers))
    if request.acks == 0 and refuse is None:
        return None
    if waits:
        return asyncio.ensure_future(_replicated(results, waits, request.timeout_ms, version, header.flexible))
    return Reply.of(produce.encode_response(results, version, header.flexible))


async def _replicated(
    results: list[tuple[str, list[produce.PartitionResponse]]],
    waits: list[Wait],
    timeout_ms: int,
    version: int,
    flexible: bool,
) -> Outcome:
    """acks=all: answer once every partition's high watermark passed its records, or with the
    error that stopped it (NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT)."""
    futures = [w[2] for w in waits]
    _done, pending = await asyncio.wait(futures, timeout=max(timeout_ms, 0) / 1000)
    for topic_index, partition_index, future in waits:
        code, message = 0, None
        if future in pending:
            future.cancel()
            code, message = REQUEST_TIMED_OUT, f"not replicated to the ISR within {timeout_ms} ms"
        elif future.exception() is not None:
            exc = future.exception()
            code = exc.error_code if isinstance(exc, KafkaError) else 2
            message = str(exc)
        if code:
            answers = results[topic_index][1]
            old = answers[partition_index]
            answers[partition_index] = produce.PartitionResponse(old.partition, code, error_message=message)
    return Reply.of(produce.encode_response(results, version, flexible))
