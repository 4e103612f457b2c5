"""OffsetCommit (8), OffsetFetch (9), OffsetDelete (47): committed offsets, kept by the group
coordinator in ``__consumer_offsets``."""

from __future__ import annotations

import asyncio
from typing import Any

from tidelog.broker.api.context import (
    GROUP_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
    BrokerContext,
    Outcome,
    Reply,
)
from tidelog.broker.groups.codes import NOT_COORDINATOR
from tidelog.broker.groups.offsets_store import OFFSETS_TOPIC
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.errors import KafkaError
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation


def _reply(api_key: int, version: int, **fields: object) -> Reply:
    return Reply.of(messages.encode_response(messages.build(messages.response_type(api_key, version), **fields)))


COMMIT_TIMEOUT_S = 5.0  # offsets.commit.timeout.ms
COORDINATOR_NOT_AVAILABLE = 15


def _replicated(ctx: BrokerContext, group_id: str) -> asyncio.Future[None] | None:
    """In a cluster, a commit is answered once the offsets partition's ISR has it (acks=all, as
    Kafka writes offsets); None when there is nothing to wait for."""
    if ctx.cluster is None:
        return None
    try:
        partition = ctx.groups.store.partition_of(group_id)
    except KafkaError:
        return None
    replica = ctx.replicas.replicas.get((OFFSETS_TOPIC, partition))
    if replica is None or not replica.is_leader or replica.high_watermark >= replica.log.log_end_offset:
        return None
    return replica.wait_for(replica.log.log_end_offset)


def offset_commit(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome | asyncio.Future[Outcome]:
    version = header.api_version
    r = messages.decode_request(8, version, body)
    generation = int(messages.field_or(r, "generation_id_or_member_epoch", messages.field_or(r, "generation_id", -1)))
    offsets = {
        (t.name, int(p.partition_index)): (
            int(p.committed_offset),
            int(messages.field_or(p, "committed_leader_epoch", -1)),
            p.committed_metadata,
        )
        for t in r.topics
        for p in t.partitions
    }
    if not ctx.allowed_group(Operation.READ, r.group_id):
        results = dict.fromkeys(offsets, GROUP_AUTHORIZATION_FAILED)
        return _reply(8, version, throttle_time=0, topics=_by_topic(results))
    denied = {tp for tp in offsets if not ctx.allowed_topic(Operation.READ, tp[0])}
    unknown = {tp for tp in offsets if tp not in denied and not ctx.topics.has_partition(*tp)}
    results = ctx.groups.commit(
        r.group_id,
        generation,
        r.member_id,
        messages.field_or(r, "group_instance_id", None),
        {tp: v for tp, v in offsets.items() if tp not in unknown and tp not in denied},
    )
    results.update(dict.fromkeys(unknown, 3))  # UNKNOWN_TOPIC_OR_PARTITION, as Kafka answers
    results.update(dict.fromkeys(denied, TOPIC_AUTHORIZATION_FAILED))

    def answer() -> Reply:
        return _reply(8, version, throttle_time=0, topics=_by_topic(results))

    wait = _replicated(ctx, r.group_id) if any(code == 0 for code in results.values()) else None
    if wait is None:
        return answer()

    async def replicated() -> Outcome:
        try:
            await asyncio.wait_for(wait, COMMIT_TIMEOUT_S)
        except (KafkaError, TimeoutError):
            for tp, code in list(results.items()):
                if code == 0:
                    results[tp] = COORDINATOR_NOT_AVAILABLE
        return answer()

    return asyncio.ensure_future(replicated())


def _by_topic(results: dict[tuple[str, int], int]) -> list[dict[str, Any]]:
    topics: dict[str, list[dict[str, int]]] = {}
    for (topic, partition), code in results.items():
        topics.setdefault(topic, []).append(dict(partition_index=partition, error_code=code))
    return [dict(name=name, partitions=p) for name, p in topics.items()]


def _fetch_group(ctx: BrokerContext, group_id: str, topics: Any) -> list[dict[str, Any]]:
    """Committed offsets; topics the principal may not describe are answered TOPIC_AUTHORIZATION_FAILED
    when named, and left out when all are asked for."""
    wanted = None if topics is None else [(t.name, int(p)) for t in topics for p in t.partition_indexes]
    committed = ctx.groups.committed(group_id, wanted)
    keys = wanted if wanted is not None else sorted(committed)
    out: dict[str, list[dict[str, Any]]] = {}
    for topic, partition in keys:
        allowed = ctx.allowed_topic(Operation.DESCRIBE, topic)
        if not allowed and wanted is None:
            continue
        entry = committed.get((topic, partition)) if allowed else None
        out.setdefault(topic, []).append(
            dict(
                partition_index=partition,
                committed_offset=entry.offset if entry else -1,
                committed_leader_epoch=entry.leader_epoch if entry else -1,
                metadata=entry.metadata if entry else "",
                error_code=0 if allowed else TOPIC_AUTHORIZATION_FAILED,
            )
        )
    return [dict(name=name, partitions=parts) for name, parts in out.items()]


def offset_fetch(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    r = messages.decode_request(9, version, body)

    def error_for(group_id: str) -> int:
        if not ctx.allowed_group(Operation.DESCRIBE, group_id):
            return GROUP_AUTHORIZATION_FAILED
        return 0 if ctx.groups.owns(group_id) else NOT_COORDINATOR

    if version >= 8:
        groups = [
            dict(
                group_id=g.group_id,
                error_code=error_for(g.group_id),
                topics=[] if error_for(g.group_id) else _fetch_group(ctx, g.group_id, g.topics),
            )
            for g in r.groups
        ]
        return _reply(9, version, throttle_time=0, groups=groups)
    if code := error_for(r.group_id):
        return _reply(9, version, throttle_time=0, topics=[], error_code=code)
    return _reply(9, version, throttle_time=0, topics=_fetch_group(ctx, r.group_id, r.topics), error_code=0)


def offset_delete(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    r = messages.decode_request(47, header.api_version, body)
    tps = [(t.name, int(p.partition_index)) for t in r.topics for p in t.partitions]
    if not ctx.allowed_group(Operation.DELETE, r.group_id):
        return _reply(47, header.api_version, error_code=GROUP_AUTHORIZATION_FAILED, throttle_time=0, topics=[])
    denied = [tp for tp in tps if not ctx.allowed_topic(Operation.READ, tp[0])]
    code, results = ctx.groups.delete_offsets(r.group_id, [tp for tp in tps if tp not in denied])
    results.update(dict.fromkeys(denied, TOPIC_AUTHORIZATION_FAILED))
    topics: dict[str, list[dict[str, int]]] = {}
    for (topic, partition), c in results.items():
        topics.setdefault(topic, []).append(dict(partition_index=partition, error_code=c))
    return _reply(
        47,
        header.api_version,
        error_code=code,
        throttle_time=0,
        topics=[dict(name=n, partitions=p) for n, p in topics.items()],
    )
