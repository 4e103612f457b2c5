"""Replication state on one broker: the leader epoch cache (KIP-101/279 answers, truncation,
its checkpoint file), and a leader replica's bookkeeping (high watermark over the ISR, followers
falling out of sync and rejoining, acks=all waits), on real partition logs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from logtesting import fresh_batch

from tidelog.broker.cluster.state import PartitionState
from tidelog.broker.log.manager import LogManager
from tidelog.broker.protocol.errors import KafkaError
from tidelog.broker.replication.epochs import FILE, LeaderEpochCache
from tidelog.broker.replication.replica import UNKNOWN, Replica


def test_epoch_cache_answers_offset_for_leader_epoch(tmp_path: Path) -> None:
    logs = LogManager.open(tmp_path)
    cache = LeaderEpochCache(tmp_path, logs.io)
    assert cache.end_offset_for(0, 10) == (-1, -1)
    cache.assign(0, 0)
    cache.assign(2, 40)
    cache.assign(5, 90)
    cache.assign(4, 95)  # older than the latest: ignored
    assert cache.end_offset_for(5, 120) == (5, 120)
    assert cache.end_offset_for(9, 120) == (5, 120)
    assert cache.end_offset_for(3, 120) == (2, 90)
    assert cache.end_offset_for(1, 120) == (0, 40)
    cache.truncate_from_end(60)
    assert cache.epochs == [0, 2]
    again = LeaderEpochCache(tmp_path, logs.io)
    assert (again.epochs, again.starts) == ([0, 2], [0, 40])
    logs.close_sync()


def test_damaged_epoch_file_starts_empty(tmp_path: Path) -> None:
    logs = LogManager.open(tmp_path)
    (tmp_path / FILE).write_text("0\n3\n1 0\nbroken\n")
    assert LeaderEpochCache(tmp_path, logs.io).epochs == []
    logs.close_sync()


def _leader(tmp_path: Path, isr: tuple[int, ...] = (1, 2, 3), min_insync: int = 2) -> tuple[Replica, LogManager]:
    logs = LogManager.open(tmp_path)
    plog = logs.get_or_create("t", 0)
    replica = Replica("t", 0, 1, plog, LeaderEpochCache(plog.directory, logs.io), UNKNOWN, min_insync=min_insync)
    replica.apply(PartitionState((1, 2, 3), isr, 1, 3, 0))
    return replica, logs


def _append(replica: Replica, records: int) -> int:
    info = replica.log.append_as_leader(memoryview(fresh_batch([b"v"] * records)), leader_epoch=replica.leader_epoch)
    return info.last_offset + 1


@pytest.mark.asyncio
async def test_high_watermark_is_the_smallest_log_end_in_the_isr(tmp_path: Path) -> None:
    replica, logs = _leader(tmp_path)
    assert replica.epochs.epochs == [3]
    end = _append(replica, 5)
    assert not replica.maybe_advance_high_watermark()
    wait = replica.wait_for(end)
    assert replica.follower_fetched(2, end) is False  # follower 3 has not fetched yet
    assert replica.follower_fetched(3, 2)
    assert replica.high_watermark == 2
    assert not wait.done()
    replica.follower_fetched(3, end)
    assert replica.high_watermark == end
    await asyncio.wait_for(wait, 1)
    logs.close_sync()


@pytest.mark.asyncio
async def test_shrinking_isr_fails_acks_all_waits(tmp_path: Path) -> None:
    replica, logs = _leader(tmp_path)
    end = _append(replica, 3)
    wait = replica.wait_for(end)
    replica.apply(PartitionState((1, 2, 3), (1,), 1, 3, 1))
    with pytest.raises(KafkaError) as info:
        await asyncio.wait_for(wait, 1)
    assert info.value.error_code == 20
    lost = replica.wait_for(end + 10)
    replica.apply(PartitionState((1, 2, 3), (2, 3), 2, 4, 2))
    with pytest.raises(KafkaError) as info:
        await asyncio.wait_for(lost, 1)
    assert info.value.error_code == 6
    logs.close_sync()


def test_lagging_followers_leave_and_caught_up_ones_rejoin(tmp_path: Path) -> None:
    replica, logs = _leader(tmp_path)
    end = _append(replica, 4)
    replica.follower_fetched(2, end)
    replica.follower_fetched(3, 1)
    replica.followers[3].last_caught_up_ms -= 10_000
    assert replica.out_of_sync(5_000) == [3]
    replica.apply(PartitionState((1, 2, 3), (1, 2), 1, 3, 1))
    assert replica.high_watermark == end
    assert replica.ready_to_join() == []
    replica.follower_fetched(3, end)
    assert replica.ready_to_join() == [3]
    logs.close_sync()


def test_a_replica_added_again_starts_unknown(tmp_path: Path) -> None:
    replica, logs = _leader(tmp_path, isr=(1, 2))
    end = _append(replica, 4)
    replica.follower_fetched(3, end)
    assert replica.ready_to_join() == [3]
    replica.apply(PartitionState((1, 2), (1, 2), 1, 3, 1))  # moved away
    replica.apply(PartitionState((1, 2, 3), (1, 2), 1, 3, 2, adding=(3,)))  # and back, empty
    assert replica.ready_to_join() == []
    assert replica.followers[3].log_end_offset == -1
    logs.close_sync()


def test_last_caught_up_uses_the_previous_fetch(tmp_path: Path) -> None:
    replica, logs = _leader(tmp_path)
    end = _append(replica, 2)
    replica.follower_fetched(2, 0)
    first = replica.followers[2].last_fetch_ms
    time.sleep(0.01)
    _append(replica, 2)
    replica.follower_fetched(2, end)  # reached what the leader had at its previous fetch
    assert replica.followers[2].last_caught_up_ms >= first
    logs.close_sync()
