"""Fetch (1): whole batches from each requested partition, as file regions.

Long polling: if fewer than ``min_bytes`` are ready, wait up to ``max_wait_ms`` for an append to
any requested partition. The first partition with data may exceed the byte limits by one batch
(KIP-74); the rest stay within ``max_bytes`` and ``partition_max_bytes``. Incremental fetch
sessions are answered with session id 0 ("no session"): clients then send full requests. With no
transactions, the last stable offset is the high watermark for both isolation levels.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tidelog.broker.api.context import TOPIC_AUTHORIZATION_FAILED, BrokerContext, Outcome, Reply
from tidelog.broker.log.files import FileRegion
from tidelog.broker.protocol import fetch, messages
from tidelog.broker.protocol.errors import KafkaError
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation

API_KEY = 1
log = logging.getLogger(__name__)
Results = list[tuple[str, list[fetch.PartitionResult]]]


def _collect(ctx: BrokerContext, request: object) -> tuple[Results, int]:
    budget = min(int(messages.field_or(request, "max_bytes", 2**31 - 1)), ctx.settings.fetch_max_bytes)
    replica_id = int(messages.field_or(request, "replica_id", -1))
    results: Results = []
    total = 0
    follower_allowed = replica_id < 0 or ctx.allowed_cluster(Operation.CLUSTER_ACTION)
    for topic in request.topics:  # type: ignore[attr-defined]
        name = topic.topic
        answers: list[fetch.PartitionResult] = []
        if not (ctx.allowed_topic(Operation.READ, name) if replica_id < 0 else follower_allowed):
            denied = TOPIC_AUTHORIZATION_FAILED
            results.append(
                (name, [fetch.PartitionResult(int(p.partition), denied, -1, -1, -1, None) for p in topic.partitions])
            )
            continue
        for p in topic.partitions:
            index = int(p.partition)
            offset = int(p.fetch_offset)
            try:
                replica = ctx.leader(name, index, int(messages.field_or(p, "current_leader_epoch", -1)))
                if replica_id >= 0:  # a follower: its fetch offset is its log end
                    ctx.replicas.follower_fetched(replica_id, replica, offset)
                hw = replica.high_watermark
                limit = min(int(p.partition_max_bytes), max(budget - total, 0))
                min_one = total == 0
                throttle = ctx.replicas.throttled(replica, replica_id) if replica_id >= 0 else None
                if throttle is not None:  # a replica being added by a throttled reassignment
                    limit, min_one = min(limit, throttle[0]), min_one and throttle[1]
                info = replica.log.read(
                    offset,
                    limit,
                    max_offset=replica.log.log_end_offset if replica_id >= 0 else hw,
                    min_one=min_one,
                )
                if throttle is not None and info.region is not None:
                    ctx.replicas.throttle.spend(name, info.region.length)
            except KafkaError as exc:
                log.info("fetch %s-%d at %d: %s", name, index, offset, exc)
                lso = hw = start = -1
                known = ctx.replicas.replicas.get((name, index))
                if known is not None:
                    hw = lso = known.high_watermark
                    start = known.log.log_start_offset
                answers.append(fetch.PartitionResult(index, exc.error_code, hw, lso, start, None))
                continue
            region = info.region
            if region is not None:
                total += region.length
                records = max(region.next_offset - max(int(p.fetch_offset), region.first_offset), 0)
                ctx.observe("fetched", (name, region.length, records))
            answers.append(fetch.PartitionResult(index, 0, hw, hw, info.log_start_offset, region))
        results.append((name, answers))
    return results, total


def _release(results: Results) -> None:
    for _name, partitions in results:
        for p in partitions:
            if isinstance(p.records, FileRegion):
                p.records.release()


def _reply(results: Results, header: RequestHeader) -> Reply:
    parts, length = fetch.encode_response(results, header.api_version, header.flexible)
    return Reply(parts, length)


async def _wait_and_collect(ctx: BrokerContext, request: object, header: RequestHeader, deadline: float) -> Outcome:
    """Register for appends first, then look: an append between the two cannot be missed."""
    min_bytes = int(request.min_bytes)  # type: ignore[attr-defined]
    wanted = [(t.topic, int(p.partition)) for t in request.topics for p in t.partitions]  # type: ignore[attr-defined]
    while True:
        events = [ctx.waiters.event(topic, partition) for topic, partition in wanted]
        results, total = _collect(ctx, request)
        remaining = deadline - time.monotonic()
        if total >= min_bytes or remaining <= 0 or not events:
            return _reply(results, header)
        _release(results)
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome | asyncio.Future[Outcome]:
    request = messages.decode_request(API_KEY, header.api_version, body)
    results, total = _collect(ctx, request)
    max_wait = messages.as_int(request.max_wait)
    if total >= int(request.min_bytes) or max_wait <= 0:
        return _reply(results, header)
    _release(results)
    deadline = time.monotonic() + max_wait / 1000
    return asyncio.ensure_future(_wait_and_collect(ctx, request, header, deadline))
