"""The classic group coordinator (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, offsets), after
Kafka's ``GroupCoordinator``: a join waits until every known member has rejoined (or its rebalance
timeout passes; an empty group first waits ``group.initial.rebalance.delay.ms``), then the leader
gets every member's metadata, assigns in SyncGroup, and all members get their share. Members that
stop heartbeating for ``session.timeout.ms`` are removed and the group rebalances. Static members
(``group.instance.id``) rejoin without a rebalance. Offsets and group metadata are written to
``__consumer_offsets`` before the answer goes out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tidelog.broker.groups.codes import (
    FENCED_INSTANCE_ID,
    ILLEGAL_GENERATION,
    INCONSISTENT_GROUP_PROTOCOL,
    INVALID_GROUP_ID,
    INVALID_SESSION_TIMEOUT,
    MEMBER_ID_REQUIRED,
    NONE,
    NOT_COORDINATOR,
    REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID,
)
from tidelog.broker.groups.group import Group, JoinResult, Member, State
from tidelog.broker.groups.offset_ops import OffsetOps
from tidelog.broker.groups.offsets_store import OffsetsStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GroupSettings:
    initial_rebalance_delay_ms: int = 3000  # group.initial.rebalance.delay.ms
    min_session_timeout_ms: int = 6000  # group.min.session.timeout.ms
    max_session_timeout_ms: int = 1_800_000  # group.max.session.timeout.ms
    offset_metadata_max_bytes: int = 4096  # offset.metadata.max.bytes


class GroupCoordinator(OffsetOps):
    def __init__(
        self,
        store: OffsetsStore,
        settings: GroupSettings | None = None,
        observe: Callable[[str, Any], None] = lambda _name, _value: None,
    ) -> None:
        self.store = store
        self.settings = settings or GroupSettings()
        self.offset_metadata_max_bytes = self.settings.offset_metadata_max_bytes
        self.observe = observe
        # Whether this broker leads the group's __consumer_offsets partition: always on a lone broker;
        # the replicated cluster wires it to partition leadership.
        self.owns: Callable[[str], bool] = lambda _group_id: True
        self.groups: dict[str, Group] = {}

    def load(self, partitions: list[int] | None = None) -> None:
        """Groups and offsets from ``__consumer_offsets`` (all partitions, or those this broker just
        became the leader of); restored members must heartbeat in time."""
        loaded = self.store.load(partitions)
        if partitions is None:
            self.groups = loaded
        else:
            self.groups.update(loaded)
        for group in loaded.values():
            for member in group.members.values():
                self._touch(group, member)

    def unload(self, partition: int) -> None:
        """Leadership of ``partition`` moved away: forget its groups (their members go to the new
        coordinator, sent there by NOT_COORDINATOR)."""
        gone = set(self.store.unload(partition))
        for group_id in [g for g in self.groups if g in gone or not self.owns(g)]:
            group = self.groups.pop(group_id)
            for member in group.members.values():
                if member.session_timer is not None:
                    member.session_timer.cancel()

    # -- timers ----------------------------------------------------------------------------------

    def _touch_member(self, group: Group, member_id: str) -> None:
        self._touch(group, group.members[member_id])

    def _touch(self, group: Group, member: Member) -> None:
        if member.session_timer is not None:
            member.session_timer.cancel()
        member.session_timer = asyncio.get_running_loop().call_later(
            member.session_timeout_ms / 1000, self._expire, group.group_id, member.member_id
        )

    def _expire(self, group_id: str, member_id: str) -> None:
        group = self.groups.get(group_id)
        member = group.members.get(member_id) if group else None
        if group is None or member is None:
            return
        if member.join_future is not None:  # waiting in a join: the rebalance timeout governs it
            self._touch(group, member)
            return
        log.info("group %s: member %s missed its session timeout; rebalancing", group_id, member_id)
        self._remove(group, member)

    def _remove(self, group: Group, member: Member) -> None:
        if member.session_timer is not None:
            member.session_timer.cancel()
        group.members.pop(member.member_id, None)
        if member.group_instance_id and group.static_members.get(member.group_instance_id) == member.member_id:
            del group.static_members[member.group_instance_id]
        if member.join_future is not None and not member.join_future.done():
            member.join_future.set_result(JoinResult(UNKNOWN_MEMBER_ID))
        if member.sync_future is not None and not member.sync_future.done():
            member.sync_future.set_result((UNKNOWN_MEMBER_ID, b""))
        if group.leader_id == member.member_id:
            group.leader_id = next(iter(group.members), None)
        if not group.members:  # the last member left or died: the group is empty now, durably
            if group.state != State.EMPTY:
                group.state = State.PREPARING_REBALANCE
                self._complete_join(group)
            return
        if group.state == State.PREPARING_REBALANCE:
            self._maybe_complete_join(group)
        elif group.state in (State.STABLE, State.COMPLETING_REBALANCE):
            self._prepare_rebalance(group)

    # -- join ------------------------------------------------------------------------------------

    async def join(
        self,
        group_id: str,
        member_id: str,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        session_ms: int,
        rebalance_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        require_known_member: bool,
    ) -> JoinResult:
        s = self.settings
        if not group_id:
            return JoinResult(INVALID_GROUP_ID)
        if not self.owns(group_id):
            return JoinResult(NOT_COORDINATOR, member_id=member_id)
        if not s.min_session_timeout_ms <= session_ms <= s.max_session_timeout_ms:
            return JoinResult(INVALID_SESSION_TIMEOUT)
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = Group(group_id)
        if not group.supports(protocol_type, protocols):
            return JoinResult(INCONSISTENT_GROUP_PROTOCOL, member_id=member_id)
        if not member_id:
            if instance_id and instance_id in group.static_members:
                result = self._rejoin_static(
                    group, instance_id, client_id, client_host, session_ms, rebalance_ms, protocols
                )
                return result if isinstance(result, JoinResult) else await result
            new_id = Group.new_member_id(client_id)
            if require_known_member and not instance_id:
                group.pending_members.add(new_id)
                return JoinResult(MEMBER_ID_REQUIRED, member_id=new_id)
            member_id = new_id
            group.pending_members.add(new_id)  # accepted below as a new member
        member = group.members.get(member_id)
        if member is None:
            if member_id not in group.pending_members and not instance_id:
                return JoinResult(UNKNOWN_MEMBER_ID, member_id=member_id)
            group.pending_members.discard(member_id)
            member = Member(
                member_id, instance_id, client_id, client_host, session_ms, rebalance_ms, protocol_type, protocols
            )
            group.members[member_id] = member
            if instance_id:
                group.static_members[instance_id] = member_id
            if group.state != State.PREPARING_REBALANCE:
                self._prepare_rebalance(group)
        else:
            if instance_id and group.static_members.get(instance_id) != member_id:
                return JoinResult(FENCED_INSTANCE_ID, member_id=member_id)
            changed = member.protocols != protocols
            member.protocols, member.session_timeout_ms, member.rebalance_timeout_ms = (
                protocols,
                session_ms,
                rebalance_ms,
            )
            if group.state == State.STABLE and not changed and member_id != group.leader_id:
                self._touch(group, member)
                return self._current(group, member_id)
            if group.state != State.PREPARING_REBALANCE:
                self._prepare_rebalance(group)
        member.join_future = asyncio.get_running_loop().create_future()
        future = member.join_future
        self._maybe_complete_join(group)
        return await future

    def _rejoin_static(
        self,
        group: Group,
        instance_id: str,
        client_id: str,
        client_host: str,
        session_ms: int,
        rebalance_ms: int,
        protocols: list[tuple[str, bytes]],
    ) -> JoinResult | asyncio.Future[JoinResult]:
        """A static member came back: swap in a new member id; no rebalance if nothing changed."""
        old_id = group.static_members[instance_id]
        old = group.members.pop(old_id)
        if old.session_timer is not None:
            old.session_timer.cancel()
        if old.join_future is not None and not old.join_future.done():
            old.join_future.set_result(JoinResult(FENCED_INSTANCE_ID))
        if old.sync_future is not None and not old.sync_future.done():
            old.sync_future.set_result((FENCED_INSTANCE_ID, b""))
        new_id = Group.new_member_id(client_id)
        member = Member(
            new_id,
            instance_id,
            client_id,
            client_host,
            session_ms,
            rebalance_ms,
            old.protocol_type,
            protocols,
            old.assignment,
        )
        group.members[new_id] = member
        group.static_members[instance_id] = new_id
        if group.leader_id == old_id:
            group.leader_id = new_id
        self._touch(group, member)
        if group.state == State.STABLE and old.protocols == protocols:
            self.store.store_group(group)
            return self._current(group, new_id)
        self._prepare_rebalance(group)
        member.join_future = asyncio.get_running_loop().create_future()
        fut = member.join_future
        self._maybe_complete_join(group)
        return fut

    def _current(self, group: Group, member_id: str) -> JoinResult:
        members = self._member_list(group) if member_id == group.leader_id else []
        return JoinResult(
            NONE,
            group.generation_id,
            group.protocol_type,
            group.protocol_name,
            group.leader_id or "",
            member_id,
            members,
        )

    def _member_list(self, group: Group) -> list[tuple[str, str | None, bytes]]:
        protocol = group.protocol_name or ""
        return [(m.member_id, m.group_instance_id, m.metadata_for(protocol)) for m in group.members.values()]

    def _prepare_rebalance(self, group: Group) -> None:
        if group.state == State.COMPLETING_REBALANCE:
            for member in group.members.values():
                if member.sync_future is not None and not member.sync_future.done():
                    member.sync_future.set_result((REBALANCE_IN_PROGRESS, b""))
        initial = group.state == State.EMPTY
        group.state = State.PREPARING_REBALANCE
        if group.join_timer is not None:
            group.join_timer.cancel()
        if initial:
            delay = self.settings.initial_rebalance_delay_ms
            group.join_timer = asyncio.get_running_loop().call_later(delay / 1000, self._initial_delay_over, group)
            group.initial_delay_pending = True
        else:
            timeout = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
            group.join_timer = asyncio.get_running_loop().call_later(timeout / 1000, self._join_deadline, group)
            group.initial_delay_pending = False

    def _initial_delay_over(self, group: Group) -> None:
        group.initial_delay_pending = False
        if group.state != State.PREPARING_REBALANCE:
            return
        if group.all_joined():
            self._complete_join(group)
            return
        timeout = max((m.rebalance_timeout_ms for m in group.members.values()), default=0)
        group.join_timer = asyncio.get_running_loop().call_later(timeout / 1000, self._join_deadline, group)

    def _join_deadline(self, group: Group) -> None:
        if group.state != State.PREPARING_REBALANCE:
            return
        for member in [m for m in group.members.values() if m.join_future is None]:
            log.info("group %s: member %s did not rejoin in time; removing it", group.group_id, member.member_id)
            if member.session_timer is not None:
                member.session_timer.cancel()
            group.members.pop(member.member_id)
            if member.group_instance_id:
                group.static_members.pop(member.group_instance_id, None)
        self._complete_join(group)

    def _maybe_complete_join(self, group: Group) -> None:
        if group.state == State.PREPARING_REBALANCE and not group.initial_delay_pending and group.all_joined():
            self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
            group.join_timer = None
        group.generation_id += 1
        if not group.members:
            group.state = State.EMPTY
            group.protocol_name = group.leader_id = None
            self.store.store_group(group)
            return
        first = next(iter(group.members.values()))
        group.protocol_type = first.protocol_type
        group.protocol_name = group.select_protocol()
        if group.leader_id not in group.members:
            group.leader_id = first.member_id
        group.state = State.COMPLETING_REBALANCE
        self.observe("rebalance", group.group_id)
        for member in group.members.values():
            fut, member.join_future = member.join_future, None
            self._touch(group, member)
            if fut is not None and not fut.done():
                fut.set_result(self._current(group, member.member_id))
        log.info(
            "group %s: generation %d with %d members, protocol %s",
            group.group_id,
            group.generation_id,
            len(group.members),
            group.protocol_name,
        )

    # -- sync, heartbeat, leave ------------------------------------------------------------------

    def _check_member(self, group: Group | None, member_id: str, instance_id: str | None) -> int:
        if group is None or member_id not in group.members:
            if group is not None and instance_id and instance_id in group.static_members:
                return FENCED_INSTANCE_ID
            return UNKNOWN_MEMBER_ID
        if instance_id and group.static_members.get(instance_id) != member_id:
            return FENCED_INSTANCE_ID
        return NONE

    async def sync(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        assignments: dict[str, bytes],
    ) -> tuple[int, bytes, str | None, str | None]:
        if not self.owns(group_id):
            return NOT_COORDINATOR, b"", None, None
        group = self.groups.get(group_id)
        error = self._check_member(group, member_id, instance_id)
        if error:
            return error, b"", None, None
        assert group is not None
        if generation != group.generation_id:
            return ILLEGAL_GENERATION, b"", None, None
        member = group.members[member_id]
        self._touch(group, member)
        if group.state == State.PREPARING_REBALANCE:
            return REBALANCE_IN_PROGRESS, b"", None, None
        if group.state == State.STABLE:
            return NONE, member.assignment, group.protocol_type, group.protocol_name
        if member_id == group.leader_id:
            for mid, m in group.members.items():
                m.assignment = assignments.get(mid, b"")
            group.state = State.STABLE
            self.store.store_group(group)
            for m in group.members.values():
                if m.sync_future is not None and not m.sync_future.done():
                    m.sync_future.set_result((NONE, m.assignment))
                m.sync_future = None
            return NONE, member.assignment, group.protocol_type, group.protocol_name
        member.sync_future = asyncio.get_running_loop().create_future()
        code, assignment = await member.sync_future
        return code, assignment, group.protocol_type, group.protocol_name

    def heartbeat(self, group_id: str, generation: int, member_id: str, instance_id: str | None) -> int:
        if not self.owns(group_id):
            return NOT_COORDINATOR
        group = self.groups.get(group_id)
        error = self._check_member(group, member_id, instance_id)
        if error:
            return error
        assert group is not None
        self._touch(group, group.members[member_id])
        if group.state == State.PREPARING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        if generation != group.generation_id:
            return ILLEGAL_GENERATION
        return NONE

    def leave(self, group_id: str, members: Iterable[tuple[str, str | None]]) -> list[tuple[str, str | None, int]]:
        group = self.groups.get(group_id)
        out = []
        if not self.owns(group_id):
            return [(member_id, instance_id, NOT_COORDINATOR) for member_id, instance_id in members]
        for member_id, instance_id in members:
            mid = member_id
            if group is not None and not mid and instance_id:
                mid = group.static_members.get(instance_id, "")
            error = self._check_member(group, mid, instance_id)
            if not error and group is not None:
                log.info("group %s: member %s left", group_id, mid)
                self._remove(group, group.members[mid])
            out.append((member_id, instance_id, error))
        return out
