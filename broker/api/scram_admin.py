"""DescribeUserScramCredentials (50) and AlterUserScramCredentials (51): SCRAM users, as Kafka's
``kafka-configs --alter --add-config 'SCRAM-SHA-512=[password=...]' --entity-type users`` and the
admin clients manage them. Upserts arrive salted (the client sends salt, iterations and
SaltedPassword); the broker keeps only StoredKey and ServerKey. Describing needs DESCRIBE on the cluster,
altering ALTER (CLUSTER_AUTHORIZATION_FAILED otherwise), when an authorizer is on."""

from __future__ import annotations

from typing import Any

from tidelog.broker.api.context import BrokerContext, Reply
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security import scram
from tidelog.broker.security.acl import Operation

CLUSTER_AUTHORIZATION_FAILED = 31
UNSUPPORTED_SASL_MECHANISM, RESOURCE_NOT_FOUND, DUPLICATE_RESOURCE, UNACCEPTABLE_CREDENTIAL = 33, 91, 92, 93
MECHANISM_NAMES = {v: k for k, v in scram.MECHANISM_IDS.items()}


async def describe(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Reply:
    request = messages.decode_request(50, header.api_version, body)
    if not ctx.allowed_cluster(Operation.DESCRIBE):
        denied = f"{ctx.principal} may not DESCRIBE the cluster"
        response = messages.build(
            messages.response_type(50, header.api_version),
            throttle_time=0,
            error_code=CLUSTER_AUTHORIZATION_FAILED,
            error_message=denied,
            results=[],
        )
        return Reply.of(messages.encode_response(response))
    users = await ctx.credentials.users()
    wanted = [u.name for u in request.users] if request.users is not None else sorted(users)
    results: list[dict[str, Any]] = []
    for name in wanted:
        if wanted.count(name) > 1:
            results.append(dict(user=name, error_code=DUPLICATE_RESOURCE, error_message="named twice",
                                credential_infos=[]))  # fmt: skip
        elif name not in users:
            missing = f"no SCRAM credentials for user {name}"
            results.append(dict(user=name, error_code=RESOURCE_NOT_FOUND, error_message=missing, credential_infos=[]))
        else:
            infos = [
                dict(mechanism=scram.MECHANISM_IDS[m], iterations=c.iterations) for m, c in sorted(users[name].items())
            ]
            results.append(dict(user=name, error_code=0, error_message=None, credential_infos=infos))
    response = messages.build(messages.response_type(50, header.api_version), throttle_time=0, error_code=0,
                              error_message=None, results=results)  # fmt: skip
    return Reply.of(messages.encode_response(response))


def _check(mechanism: int, iterations: int | None) -> tuple[int, str] | None:
    if mechanism not in MECHANISM_NAMES:
        return UNSUPPORTED_SASL_MECHANISM, f"unknown SCRAM mechanism {mechanism}"
    if iterations is not None and not scram.MIN_ITERATIONS <= iterations <= scram.MAX_ITERATIONS:
        return UNACCEPTABLE_CREDENTIAL, (
            f"iterations {iterations}: between {scram.MIN_ITERATIONS} and {scram.MAX_ITERATIONS}"
        )
    return None


async def alter(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Reply:
    request = messages.decode_request(51, header.api_version, body)
    names = [d.name for d in request.deletions] + [u.name for u in request.upsertions]
    errors: dict[str, tuple[int, str]] = {}
    if not ctx.allowed_cluster(Operation.ALTER):
        errors = dict.fromkeys(names, (CLUSTER_AUTHORIZATION_FAILED, f"{ctx.principal} may not ALTER the cluster"))
    for d in request.deletions:
        problem = _check(int(d.mechanism), None)
        if problem:
            errors.setdefault(d.name, problem)
    for u in request.upsertions:
        problem = _check(int(u.mechanism), int(u.iterations))
        if problem is None and not u.name:
            problem = (UNACCEPTABLE_CREDENTIAL, "an empty user name")
        if problem:
            errors.setdefault(u.name, problem)
    pairs = [(d.name, int(d.mechanism)) for d in request.deletions] + [
        (u.name, int(u.mechanism)) for u in request.upsertions
    ]
    for name, mechanism_id in pairs:
        if pairs.count((name, mechanism_id)) > 1:
            errors.setdefault(name, (DUPLICATE_RESOURCE, "a user's mechanism may appear once per request"))
    for d in request.deletions:  # only the users being deleted are read, not every user
        mechanism = MECHANISM_NAMES.get(int(d.mechanism))
        if d.name not in errors and mechanism not in await ctx.credentials.get(d.name):
            errors[d.name] = (RESOURCE_NOT_FOUND, f"user {d.name} has no {mechanism} credential")
    for d in request.deletions:
        if d.name not in errors:
            await ctx.credentials.set(d.name, MECHANISM_NAMES[int(d.mechanism)], None)
    for u in request.upsertions:
        if u.name not in errors:
            mechanism = MECHANISM_NAMES[int(u.mechanism)]
            credential = scram.salted_credential(mechanism, bytes(u.salted_password), bytes(u.salt), int(u.iterations))
            await ctx.credentials.set(u.name, mechanism, credential)
    results = []
    for name in dict.fromkeys(names):
        code, message = errors.get(name, (0, None))
        results.append(dict(user=name, error_code=code, error_message=message))
    response = messages.build(messages.response_type(51, header.api_version), throttle_time=0, results=results)
    return Reply.of(messages.encode_response(response))
