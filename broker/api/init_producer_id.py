"""InitProducerId (22): a producer id and epoch for an idempotent producer. Transactions are not
supported yet: a request with a transactional id is refused (INVALID_REQUEST) with a log line.
A cluster member takes blocks of ids from the metadata store when its block runs out."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tidelog.broker.api.context import BrokerContext, Outcome, Reply
from tidelog.broker.cluster.store import StoreError
from tidelog.broker.groups.producer_ids import BLOCK
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation, ResourceType

log = logging.getLogger(__name__)
API_KEY = 22
INVALID_REQUEST = 42
COORDINATOR_NOT_AVAILABLE = 15
CLUSTER_AUTHORIZATION_FAILED = 31


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome | asyncio.Future[Outcome]:
    request = messages.decode_request(API_KEY, header.api_version, body)
    if request.transactional_id is None and not _may_write_idempotently(ctx):
        log.info("InitProducerId refused: %s may neither IDEMPOTENT_WRITE the cluster nor write a topic", ctx.principal)
        return _reply(header, CLUSTER_AUTHORIZATION_FAILED, -1, -1)
    if ctx.cluster is not None and ctx.producers.ids.needs_block() and request.transactional_id is None:
        return asyncio.ensure_future(_with_new_block(ctx, header, request))
    return _answer(ctx, header, request)


async def _with_new_block(ctx: BrokerContext, header: RequestHeader, request: Any) -> Outcome:
    try:
        start = await ctx.cluster.allocate_producer_ids(BLOCK)
    except StoreError as exc:
        log.warning("InitProducerId: no producer id block from the metadata store: %s", exc)
        return _reply(header, COORDINATOR_NOT_AVAILABLE, -1, -1)
    if ctx.producers.ids.needs_block():  # another request may have fetched one meanwhile
        ctx.producers.ids.add_block(start)
    return _answer(ctx, header, request)


def _may_write_idempotently(ctx: BrokerContext) -> bool:
    """IDEMPOTENT_WRITE on the cluster, or WRITE on any topic (KIP-679, as Kafka 3+ decides)."""
    authorizer = ctx.authorizer
    return (
        authorizer is None
        or ctx.allowed_cluster(Operation.IDEMPOTENT_WRITE)
        or authorizer.authorize_any(ctx.principal, ctx.client_host, Operation.WRITE, ResourceType.TOPIC)
    )


def _reply(header: RequestHeader, error: int, producer_id: int, epoch: int) -> Reply:
    response = messages.build(
        messages.response_type(API_KEY, header.api_version),
        throttle_time=0,
        error_code=error,
        producer_id=producer_id,
        producer_epoch=epoch,
    )
    return Reply.of(messages.encode_response(response))


def _answer(ctx: BrokerContext, header: RequestHeader, request: Any) -> Reply:
    if request.transactional_id is not None:
        log.info(
            "InitProducerId for transactional id %r refused: transactions are not supported yet",
            request.transactional_id,
        )
        error, producer_id, epoch = INVALID_REQUEST, -1, -1
    else:
        producer_id, epoch = ctx.producers.init(
            int(messages.field_or(request, "producer_id", -1)), int(messages.field_or(request, "producer_epoch", -1))
        )
        error = 0
    return _reply(header, error, producer_id, epoch)
