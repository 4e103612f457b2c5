"""JoinGroup (11), SyncGroup (14), Heartbeat (12), LeaveGroup (13): thin handlers over the group
coordinator. Join and Sync answer when the rebalance completes (futures)."""

from __future__ import annotations

import asyncio

from tidelog.broker.api.context import GROUP_AUTHORIZATION_FAILED, BrokerContext, Outcome, Reply
from tidelog.broker.protocol import messages
from tidelog.broker.protocol.frames import RequestHeader
from tidelog.broker.security.acl import Operation


def _reply(api_key: int, version: int, **fields: object) -> Reply:
    return Reply.of(messages.encode_response(messages.build(messages.response_type(api_key, version), **fields)))


def join_group(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome | asyncio.Future[Outcome]:
    version = header.api_version
    r = messages.decode_request(11, version, body)
    session = messages.as_int(r.session_timeout)
    rebalance = messages.as_int(messages.field_or(r, "rebalance_timeout", r.session_timeout))
    if not ctx.allowed_group(Operation.READ, r.group_id):
        return _reply(11, version, throttle_time=0, error_code=GROUP_AUTHORIZATION_FAILED, generation_id=-1,
                      protocol_type="" if version < 7 else None, protocol_name="" if version < 7 else None,
                      leader="", skip_assignment=False, member_id=r.member_id, members=[])  # fmt: skip

    async def run() -> Outcome:
        result = await ctx.groups.join(
            r.group_id,
            r.member_id,
            messages.field_or(r, "group_instance_id", None),
            header.client_id or "",
            "",
            session,
            rebalance,
            r.protocol_type,
            [(p.name, bytes(p.metadata)) for p in r.protocols],
            require_known_member=version >= 4,
        )
        return _reply(
            11,
            version,
            throttle_time=0,
            error_code=result.error_code,
            generation_id=result.generation_id,
            # v7+ send null on errors; older versions have non-nullable strings
            protocol_type=result.protocol_type or ("" if version < 7 else None),
            protocol_name=result.protocol_name or ("" if version < 7 else None),
            leader=result.leader,
            skip_assignment=False,
            member_id=result.member_id,
            members=[dict(member_id=m, group_instance_id=i, metadata=meta) for m, i, meta in result.members],
        )

    return asyncio.ensure_future(run())


def sync_group(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome | asyncio.Future[Outcome]:
    version = header.api_version
    r = messages.decode_request(14, version, body)
    assignments = {a.member_id: bytes(a.assignment) for a in r.assignments}
    if not ctx.allowed_group(Operation.READ, r.group_id):
        return _reply(14, version, throttle_time=0, error_code=GROUP_AUTHORIZATION_FAILED, protocol_type=None,
                      protocol_name=None, assignment=b"")  # fmt: skip

    async def run() -> Outcome:
        code, assignment, ptype, pname = await ctx.groups.sync(
            r.group_id, int(r.generation_id), r.member_id, messages.field_or(r, "group_instance_id", None), assignments
        )
        return _reply(
            14,
            version,
            throttle_time=0,
            error_code=code,
            protocol_type=ptype,
            protocol_name=pname,
            assignment=assignment,
        )

    return asyncio.ensure_future(run())


def heartbeat(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    r = messages.decode_request(12, header.api_version, body)
    if not ctx.allowed_group(Operation.READ, r.group_id):
        return _reply(12, header.api_version, throttle_time=0, error_code=GROUP_AUTHORIZATION_FAILED)
    code = ctx.groups.heartbeat(
        r.group_id, int(r.generation_id), r.member_id, messages.field_or(r, "group_instance_id", None)
    )
    return _reply(12, header.api_version, throttle_time=0, error_code=code)


def leave_group(ctx: BrokerContext, header: RequestHeader, body: memoryview) -> Outcome:
    version = header.api_version
    r = messages.decode_request(13, version, body)
    members = [(m.member_id, m.group_instance_id) for m in r.members] if version >= 3 else [(r.member_id, None)]
    if not ctx.allowed_group(Operation.READ, r.group_id):
        return _reply(13, version, throttle_time=0, error_code=GROUP_AUTHORIZATION_FAILED, members=[])
    results = ctx.groups.leave(r.group_id, members)
    top = results[0][2] if version < 3 or not ctx.groups.owns(r.group_id) else 0
    return _reply(
        13,
        version,
        throttle_time=0,
        error_code=top,
        members=[dict(member_id=m, group_instance_id=i, error_code=c) for m, i, c in results],
    )
