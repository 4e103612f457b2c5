"""The pure rules of the cluster: replica placement (rack-aware assignment, drain, rebalance),
the controller's decisions for a partition, and reassignment bookkeeping."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tidelog.broker.cluster.assignment import assign, drain_moves, rebalance_moves
from tidelog.broker.cluster.catalog import _reassigned
from tidelog.broker.cluster.controller import decide
from tidelog.broker.cluster.state import NO_LEADER, PartitionState, TopicState
from tidelog.broker.protocol.errors import KafkaError

ALL = {1, 2, 3}


def p(
    replicas: tuple[int, ...], isr: tuple[int, ...], leader: int, epoch: int = 5, **kw: tuple[int, ...]
) -> PartitionState:
    return PartitionState(replicas, isr, leader, epoch, 10, kw.get("adding", ()), kw.get("removing", ()))


def test_assignment_spreads_leaders_and_replicas() -> None:
    brokers = dict.fromkeys(range(1, 7))
    placement = assign(brokers, 60, 3, rng=random.Random(7))
    assert all(len(set(r)) == 3 for r in placement)
    leaders = Counter(r[0] for r in placement)
    replicas = Counter(b for r in placement for b in r)
    assert set(leaders.values()) == {10}
    assert max(replicas.values()) - min(replicas.values()) <= 1


def test_assignment_is_rack_aware() -> None:
    brokers = {1: "a", 2: "a", 3: "b", 4: "b", 5: "c", 6: "c"}
    for replicas in assign(brokers, 30, 3, rng=random.Random(1)):
        assert len({brokers[b] for b in replicas}) == 3, replicas


def test_assignment_refuses_more_replicas_than_brokers() -> None:
    with pytest.raises(KafkaError) as info:
        assign({1: None, 2: None}, 1, 3)
    assert info.value.error_code == 38


def test_drain_moves_everything_off_a_broker() -> None:
    placement = {("t", i): r for i, r in enumerate(assign({1: None, 2: None, 3: None, 4: None}, 12, 2))}
    moves = drain_moves(placement, 4, {1: None, 2: None, 3: None, 4: None})
    after = {tp: moves.get(tp, list(r)) for tp, r in placement.items()}
    assert all(4 not in r and len(set(r)) == 2 for r in after.values())
    assert {tp for tp, r in placement.items() if 4 in r} == set(moves)


def test_drain_is_refused_when_too_few_brokers_remain() -> None:
    with pytest.raises(KafkaError) as info:
        drain_moves({("t", 0): [1, 2, 3]}, 3, {1: None, 2: None, 3: None})
    assert info.value.error_code == 38


def test_rebalance_evens_out_a_new_broker() -> None:
    placement = {("t", i): r for i, r in enumerate(assign({1: None, 2: None, 3: None}, 12, 3, rng=random.Random(3)))}
    brokers = {1: None, 2: None, 3: None, 4: None}
    moves = rebalance_moves(placement, brokers)
    after = {tp: moves.get(tp, list(r)) for tp, r in placement.items()}
    counts = Counter(b for r in after.values() for b in r)
    leaders = Counter(r[0] for r in after.values())
    assert max(counts.values()) - min(counts.values()) <= 1
    assert max(leaders.values()) - min(leaders[b] for b in brokers) <= 1
    assert all(len(set(r)) == 3 for r in after.values())


def test_a_dead_leader_is_replaced_by_the_first_live_in_sync_replica() -> None:
    out = decide(p((1, 2, 3), (1, 2, 3), 1), {2, 3}, {2, 3}, unclean=False, preferred=False)
    assert (out.leader, out.isr, out.leader_epoch) == (2, (2, 3), 6)


def test_no_live_in_sync_replica_leaves_the_partition_offline_with_its_isr() -> None:
    out = decide(p((1, 2, 3), (1,), 1), {2, 3}, {2, 3}, unclean=False, preferred=False)
    assert (out.leader, out.isr) == (NO_LEADER, (1,))
    back = decide(out, ALL, ALL, unclean=False, preferred=False)
    assert (back.leader, back.leader_epoch) == (1, out.leader_epoch + 1)


def test_unclean_election_picks_an_out_of_sync_replica() -> None:
    out = decide(p((1, 2, 3), (1,), 1), {2, 3}, {2, 3}, unclean=True, preferred=False)
    assert (out.leader, out.isr) == (2, (2,))


def test_shutting_down_leader_hands_over_and_followers_leave_the_isr() -> None:
    out = decide(p((1, 2, 3), (1, 2, 3), 1), ALL, {2, 3}, unclean=False, preferred=False)
    assert out.leader == 2
    follower = decide(p((1, 2, 3), (1, 2, 3), 1), ALL, {1, 2}, unclean=False, preferred=False)
    assert (follower.leader, follower.isr, follower.leader_epoch) == (1, (1, 2), 5)


def test_dead_follower_leaves_the_isr_without_a_leader_change() -> None:
    out = decide(p((1, 2, 3), (1, 2, 3), 1), {1, 2}, {1, 2}, unclean=False, preferred=False)
    assert (out.leader, out.isr, out.leader_epoch, out.partition_epoch) == (1, (1, 2), 5, 11)


def test_unchanged_partition_is_returned_as_is() -> None:
    same = p((1, 2, 3), (1, 2, 3), 1)
    assert decide(same, ALL, ALL, unclean=False, preferred=True) is same


def test_preferred_leader_election() -> None:
    out = decide(p((1, 2, 3), (1, 2, 3), 2), ALL, ALL, unclean=False, preferred=True)
    assert (out.leader, out.leader_epoch) == (1, 6)
    not_in_sync = decide(p((1, 2, 3), (2, 3), 2), ALL, ALL, unclean=False, preferred=True)
    assert not_in_sync.leader == 2


def test_restarted_broker_loses_leadership_and_isr_membership() -> None:
    out = decide(p((1, 2, 3), (1, 2, 3), 1), ALL, ALL, unclean=False, preferred=False, restarted=frozenset({1}))
    assert (out.leader, out.isr) == (2, (2, 3))
    alone = decide(p((1, 2, 3), (1,), 1), ALL, ALL, unclean=False, preferred=False, restarted=frozenset({1}))
    assert (alone.leader, alone.isr, alone.leader_epoch) == (1, (1,), 6)
    follower = decide(p((1, 2, 3), (1, 2, 3), 1), ALL, ALL, unclean=False, preferred=False, restarted=frozenset({3}))
    assert (follower.leader, follower.isr) == (1, (1, 2))


def test_reassignment_finishes_once_added_replicas_are_in_sync() -> None:
    moving = _reassigned(p((1, 2), (1, 2), 1), [3, 2], ALL)
    assert (moving.replicas, moving.adding, moving.removing) == ((3, 2, 1), (3,), (1,))
    waiting = decide(moving, ALL, ALL, unclean=False, preferred=False)
    assert waiting.adding == (3,)
    synced = decide(moving.with_isr((1, 2, 3)), ALL, ALL, unclean=False, preferred=False)
    assert (synced.replicas, synced.adding, synced.removing) == ((3, 2), (), ())
    assert synced.leader in (3, 2)
    assert 1 not in synced.isr


def test_reassignment_cancel_and_reorder() -> None:
    moving = _reassigned(p((1, 2), (1, 2), 1), [3, 2], ALL)
    cancelled = _reassigned(moving, [], ALL)
    # The original replicas come back (their order may not: it is not kept while moving).
    assert (set(cancelled.replicas), cancelled.adding, cancelled.removing) == ({1, 2}, (), ())
    assert cancelled.leader == 1
    reordered = _reassigned(p((1, 2), (1, 2), 1), [2, 1], ALL)
    assert (reordered.replicas, reordered.leader) == ((2, 1), 2)
    with pytest.raises(KafkaError) as info:
        _reassigned(p((1, 2), (1, 2), 1), [], ALL)
    assert info.value.error_code == 85


def test_topic_state_round_trips_through_json() -> None:
    import uuid

    t = TopicState("t", uuid.uuid4(), (p((1, 2), (1,), 1, adding=(2,)), p((2, 3), (2, 3), 2)), {"retention.ms": "5"})
    assert TopicState.decode(t.encode()) == t
