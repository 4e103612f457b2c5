"""DescribeCluster (60): cluster id, controller and brokers (a lone broker is its own controller)."""

from __future__ import annotations

from tidelog.broker.api.context import BrokerContext, Outcome, Reply
from tidelog.broker.api.metadata import brokers_and_controller, cluster_operations
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.frames import RequestHeader

BROKERS_ENDPOINT = 1


def handle(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    request = messages.decode_request(60, header.api_version, body)
    endpoint_type = int(messages.field_or(request, "endpoint_type", BROKERS_ENDPOINT))
    brokers, controller = brokers_and_controller(ctx)
    error = (0, None) if endpoint_type == BROKERS_ENDPOINT else (114, "only broker endpoints are served")
    response = messages.build(
        messages.response_type(60, header.api_version),
        throttle_time=0,
        error_code=error[0],
        error_message=error[1],
        endpoint_type=endpoint_type,
        cluster_id=ctx.topics.cluster_id,
        controller_id=controller,
        brokers=[dict(broker_id=b["node_id"], host=b["host"], port=b["port"], rack=b["rack"]) for b in brokers],
        cluster_authorized_operations=(
            cluster_operations(ctx)
            if messages.field_or(request, "include_cluster_authorized_operations", False)
            else -(2**31)
        ),
    )
    return Reply.of(messages.encode_response(response))
