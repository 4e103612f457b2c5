"""Replica placement, as pure functions: Kafka's rack-aware assignment for new topics and
partitions, and the plans behind ``drain`` (move every replica off a broker) and ``rebalance``
(even out replicas, then leaders, across brokers). The controller applies what these return.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

from tidelog.broker.protocol.errors import for_code

INVALID_REPLICATION_FACTOR = 38


def rack_alternating(brokers: Mapping[int, str | None]) -> list[int]:
    """Broker ids ordered so that consecutive ids sit on different racks where possible (Kafka's
    ``getRackAlternatedBrokerList``): one from each rack in turn."""
    by_rack: dict[str | None, list[int]] = {}
    for broker_id in sorted(brokers):
        by_rack.setdefault(brokers[broker_id], []).append(broker_id)
    racks = sorted(by_rack, key=lambda r: (r is None, r or ""))
    out: list[int] = []
    while len(out) < len(brokers):
        out.extend(by_rack[rack].pop(0) for rack in racks if by_rack[rack])
    return out


def assign(
    brokers: Mapping[int, str | None],
    partitions: int,
    replication_factor: int,
    *,
    first_partition: int = 0,
    existing: Sequence[Sequence[int]] = (),
    rng: random.Random | None = None,
) -> list[list[int]]:
    """Replica lists for ``partitions`` new partitions (numbered from ``first_partition``): leaders
    spread round-robin from a random start, followers shifted so replicas of one partition land on
    different brokers and, with racks, on different racks where possible."""
    if replication_factor < 1:
        raise for_code(INVALID_REPLICATION_FACTOR)(f"replication factor must be at least 1, got {replication_factor}")
    if replication_factor > len(brokers):
        raise for_code(INVALID_REPLICATION_FACTOR)(
            f"replication factor {replication_factor} is larger than the {len(brokers)} available brokers"
        )
    rng = rng or random.Random()  # noqa: S311 - placement, not security
    racked = any(r is not None for r in brokers.values())
    ordered = rack_alternating(brokers) if racked else sorted(brokers)
    n = len(ordered)
    load = Counter(r for replicas in existing for r in replicas)
    # Start where the existing load is lightest, so added partitions even things out.
    start = min(range(n), key=lambda i: (load[ordered[i]], rng.random())) if existing else rng.randrange(n)
    shift = rng.randrange(n)
    result: list[list[int]] = []
    for i in range(partitions):
        index = first_partition + i
        if index > 0 and index % n == 0:
            shift += 1
        first = (start + i) % n
        replicas = [ordered[first]]
        racks = {brokers[ordered[first]]}
        step = 1 + shift % (n - 1) if n > 1 else 1
        k = first
        while len(replicas) < replication_factor:
            k = (k + step) % n
            candidate = ordered[k]
            if candidate in replicas:
                k = (k + 1 - step) % n  # walked onto a chosen broker: move on one by one
                continue
            # With racks, take a broker on an unused rack while one is left (Kafka's rule).
            if racked and brokers[candidate] in racks and len(racks) < len(set(brokers.values())):
                k = (k + 1 - step) % n
                continue
            replicas.append(candidate)
            racks.add(brokers[candidate])
        result.append(replicas)
    return result


def drain_moves(
    placement: Mapping[tuple[str, int], Sequence[int]], broker_id: int, brokers: Mapping[int, str | None]
) -> dict[tuple[str, int], list[int]]:
    """New replica lists that hold nothing on ``broker_id``: each of its replicas goes to the least
    loaded other broker not already holding that partition (preferring the same rack)."""
    remaining = {b: r for b, r in brokers.items() if b != broker_id}
    load = Counter(dict.fromkeys(remaining, 0))
    for replicas in placement.values():
        load.update(r for r in replicas if r in remaining)
    moves: dict[tuple[str, int], list[int]] = {}
    for tp in sorted(placement):
        replicas = list(placement[tp])
        if broker_id not in replicas:
            continue
        candidates = [b for b in remaining if b not in replicas]
        if not candidates:
            raise for_code(INVALID_REPLICATION_FACTOR)(
                f"{tp[0]}-{tp[1]} has {len(replicas)} replicas; draining broker {broker_id} leaves only "
                f"{len(remaining)} brokers"
            )
        rack = brokers.get(broker_id)
        target = min(candidates, key=lambda b: (remaining[b] != rack, load[b], b))
        load[target] += 1
        replicas[replicas.index(broker_id)] = target
        moves[tp] = replicas
    return moves


def rebalance_moves(
    placement: Mapping[tuple[str, int], Sequence[int]], brokers: Mapping[int, str | None]
) -> dict[tuple[str, int], list[int]]:
    """Replica moves that bring every broker within one replica of the average, then the preferred
    leaders (first replicas) within one of theirs; a replica only moves to a broker that does not
    hold the partition already."""
    current = {tp: list(r) for tp, r in placement.items()}
    live = sorted(brokers)
    if not live:
        return {}

    def counts(first_only: bool) -> Counter[int]:
        c: Counter[int] = Counter(dict.fromkeys(live, 0))
        for replicas in current.values():
            c.update(replicas[:1] if first_only else [r for r in replicas if r in brokers])
        return c

    changed: set[tuple[str, int]] = set()
    # Replicas on brokers no longer registered count as overload to move first.
    for tp, replicas in current.items():
        for i, r in enumerate(replicas):
            if r not in brokers:
                c = counts(False)
                options = [b for b in live if b not in replicas]
                if options:
                    replicas[i] = min(options, key=lambda b: (c[b], b))
                    changed.add(tp)
    for _ in range(10 * max(len(current), 1)):
        c = counts(False)
        high = max(live, key=lambda b: (c[b], -b))
        low = min(live, key=lambda b: (c[b], b))
        if c[high] - c[low] <= 1:
            break
        move = next((tp for tp in sorted(current) if high in current[tp] and low not in current[tp]), None)
        if move is None:
            break
        replicas = current[move]
        replicas[replicas.index(high)] = low
        changed.add(move)
    for _ in range(10 * max(len(current), 1)):
        c = counts(True)
        high = max(live, key=lambda b: (c[b], -b))
        low = min(live, key=lambda b: (c[b], b))
        if c[high] - c[low] <= 1:
            break
        lead = next((tp for tp in sorted(current) if current[tp][0] == high and low in current[tp]), None)
        if lead is None:
            break
        replicas = current[lead]
        replicas.remove(low)
        replicas.insert(0, low)
        changed.add(lead)
    return {tp: current[tp] for tp in sorted(changed) if list(placement[tp]) != current[tp]}
