"""InitProducerId (22): a producer id and epoch for an idempotent producer. Transactions are not
supported yet: a request with a transactional id is refused (INVALID_REQUEST) with a log line."""

from __future__ import annotations

import logging

from tidelog.broker.api.context import BrokerContext, Outcome, Reply
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.frames import RequestHeader

log = logging.getLogger(__name__)
API_KEY = 22
INVALID_REQUEST = 42


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    request = messages.decode_request(API_KEY, version, body)
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
    response = messages.build(
        messages.response_type(API_KEY, version),
        throttle_time=0,
        error_code=error,
        producer_id=producer_id,
        producer_epoch=epoch,
    )
    return Reply.of(messages.encode_response(response))
