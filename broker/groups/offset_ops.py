"""Committed offsets for the group coordinator: OffsetCommit (with generation and member checks),
OffsetFetch, OffsetDelete and DeleteGroups. A mixin of ``GroupCoordinator``: it uses the
coordinator's groups, store and member checks."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

from tidelog.broker.groups import codes as c
from tidelog.broker.groups.group import Group, State
from tidelog.broker.groups.offsets_store import OffsetEntry, OffsetsStore


def subscribed_topics(metadata: bytes) -> set[str]:
    """Topics in a ConsumerProtocolSubscription (version, topics array, ...); empty if unreadable."""
    try:
        pos = 2
        (count,) = struct.unpack_from(">i", metadata, pos)
        pos += 4
        topics = set()
        for _ in range(count):
            (n,) = struct.unpack_from(">h", metadata, pos)
            topics.add(metadata[pos + 2 : pos + 2 + n].decode())
            pos += 2 + n
    except (struct.error, UnicodeDecodeError):
        return set()
    return topics


class OffsetOps:
    groups: dict[str, Group]
    store: OffsetsStore
    observe: Callable[[str, Any], None]
    offset_metadata_max_bytes: int
    owns: Callable[[str], bool]

    def _check_member(self, group: Group | None, member_id: str, instance_id: str | None) -> int:
        raise NotImplementedError  # pragma: no cover - the coordinator provides it

    def _touch_member(self, group: Group, member_id: str) -> None:
        raise NotImplementedError  # pragma: no cover - the coordinator provides it

    def commit(
        self,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        offsets: dict[tuple[str, int], tuple[int, int, str | None]],
    ) -> dict[tuple[str, int], int]:
        group = self.groups.get(group_id)
        if not group_id:
            return dict.fromkeys(offsets, c.INVALID_GROUP_ID)
        if not self.owns(group_id):
            return dict.fromkeys(offsets, c.NOT_COORDINATOR)
        error = c.NONE
        if generation < 0 and not member_id:
            if group is not None and group.members:
                error = c.UNKNOWN_MEMBER_ID  # a "simple" commit into a live group
        else:
            error = self._check_member(group, member_id, instance_id)
            if not error:
                assert group is not None
                if generation != group.generation_id:
                    error = c.ILLEGAL_GENERATION
                elif group.state == State.COMPLETING_REBALANCE:
                    error = c.REBALANCE_IN_PROGRESS
                else:
                    self._touch_member(group, member_id)
        if error:
            return dict.fromkeys(offsets, error)
        now = int(time.time() * 1000)
        results: dict[tuple[str, int], int] = {}
        accepted: dict[tuple[str, int], OffsetEntry] = {}
        for tp, (offset, epoch, metadata) in offsets.items():
            if metadata is not None and len(metadata.encode()) > self.offset_metadata_max_bytes:
                results[tp] = c.OFFSET_METADATA_TOO_LARGE
            else:
                accepted[tp] = OffsetEntry(offset, epoch, metadata or "", now)
                results[tp] = c.NONE
        if group is None:
            self.groups[group_id] = Group(group_id)
        self.store.commit(group_id, accepted)
        self.observe("commit", len(accepted))
        return results

    def committed(self, group_id: str, tps: list[tuple[str, int]] | None) -> dict[tuple[str, int], OffsetEntry]:
        current = self.store.offsets.get(group_id, {})
        if tps is None:
            return dict(current)
        return {tp: current[tp] for tp in tps if tp in current}

    def delete_groups(self, group_ids: list[str]) -> dict[str, int]:
        out = {}
        for group_id in group_ids:
            group = self.groups.get(group_id)
            if not self.owns(group_id):
                out[group_id] = c.NOT_COORDINATOR
            elif group is not None and group.members:
                out[group_id] = c.NON_EMPTY_GROUP
            elif group is None and group_id not in self.store.offsets:
                out[group_id] = c.GROUP_ID_NOT_FOUND
            else:
                self.store.delete_group(group_id)
                self.groups.pop(group_id, None)
                out[group_id] = c.NONE
        return out

    def delete_offsets(self, group_id: str, tps: list[tuple[str, int]]) -> tuple[int, dict[tuple[str, int], int]]:
        group = self.groups.get(group_id)
        if not self.owns(group_id):
            return c.NOT_COORDINATOR, {}
        if group is None and group_id not in self.store.offsets:
            return c.GROUP_ID_NOT_FOUND, {}
        subscribed: set[str] = set()
        if group is not None and group.state != State.EMPTY and group.protocol_type == "consumer":
            for member in group.members.values():
                subscribed |= subscribed_topics(member.metadata_for(group.protocol_name or ""))
        results = {tp: (c.GROUP_SUBSCRIBED_TO_TOPIC if tp[0] in subscribed else c.NONE) for tp in tps}
        self.store.delete_offsets(group_id, [tp for tp, code in results.items() if code == c.NONE])
        return c.NONE, results
