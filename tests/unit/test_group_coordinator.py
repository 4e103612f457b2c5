"""The group coordinator's timing rules, in process: the initial rebalance delay gathers members that
join an empty group together; a member that does not rejoin within the rebalance timeout is dropped."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from tidelog.broker.cluster.topics import TopicStore
from tidelog.broker.groups.coordinator import GroupCoordinator, GroupSettings
from tidelog.broker.groups.offsets_store import OffsetsStore
from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.manager import LogManager

PROTOCOLS = [("range", b"")]


def _coordinator(root: Path, delay_ms: int) -> tuple[GroupCoordinator, LogManager]:
    topics = TopicStore(root, LogConfig())
    logs = LogManager.open(root, LogConfig(), topic_config=topics.log_config)
    return GroupCoordinator(OffsetsStore(topics, logs, 3), GroupSettings(initial_rebalance_delay_ms=delay_ms)), logs


async def _join(coord: GroupCoordinator, client: str, rebalance_ms: int = 10_000) -> tuple[int, str, int]:
    result = await coord.join("g", "", None, client, "", 10_000, rebalance_ms, "consumer", PROTOCOLS, False)
    return result.generation_id, result.member_id, len(result.members)


def test_the_initial_delay_puts_members_joining_together_in_one_generation() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        coord, logs = _coordinator(Path(tmp), delay_ms=300)

        async def scenario() -> list[tuple[int, str, int]]:
            first = asyncio.ensure_future(_join(coord, "a"))
            await asyncio.sleep(0.1)  # the second member arrives inside the delay
            second = asyncio.ensure_future(_join(coord, "b"))
            return list(await asyncio.gather(first, second))

        results = asyncio.run(scenario())
        logs.close_sync()
    assert {generation for generation, _, _ in results} == {1}
    assert sorted(count for _, _, count in results) == [0, 2]  # the leader sees both members


def test_without_a_delay_the_first_member_gets_a_generation_alone() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        coord, logs = _coordinator(Path(tmp), delay_ms=0)

        async def scenario() -> tuple[int, str, int]:
            return await _join(coord, "a")

        assert asyncio.run(scenario())[0] == 1
        assert coord.groups["g"].state.value == "CompletingRebalance"
        logs.close_sync()


def test_a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        coord, logs = _coordinator(Path(tmp), delay_ms=0)

        async def scenario() -> tuple[int, str, int]:
            _, member_a, _ = await _join(coord, "a", rebalance_ms=200)
            await coord.sync("g", 1, member_a, None, {member_a: b"x"})
            # b joins: a must rejoin within its rebalance timeout (200 ms) but never does
            return await _join(coord, "b", rebalance_ms=200)

        generation, member_b, count = asyncio.run(scenario())
        assert generation == 2
        assert count == 1  # only b: a was dropped
        assert list(coord.groups["g"].members) == [member_b]
        logs.close_sync()
