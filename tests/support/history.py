"""A checker over the full history of a produce/consume workload, after Jepsen's Kafka checker.

A history is what the clients saw: each acknowledged send ``(value, partition, offset)`` and each
record read ``(partition, offset, value)`` in the order each consumer read them. The checker reports:

* lost: acknowledged values never read back;
* duplicated: values stored at more than one offset (an idempotent producer must never cause this);
* inconsistent offsets: one (partition, offset) read with two different values, or an acknowledged
  (partition, offset) holding another value;
* nonmonotonic polls: a consumer reading offsets of a partition out of increasing order;
* gaps: offsets missing inside the range a partition was read over (a broker that lost data).

Used by the restart and fault tests; the replicated-cluster tests will use it with a nemesis.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Verdict:
    acked: int = 0
    read: int = 0
    lost: set[str] = field(default_factory=set)
    duplicated: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    inconsistent: list[tuple[int, int, str, str]] = field(default_factory=list)
    nonmonotonic: list[tuple[int, int, int]] = field(default_factory=list)
    gaps: dict[int, list[int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.inconsistent or self.nonmonotonic or self.gaps)

    def summary(self) -> str:
        return (
            f"acked={self.acked} read={self.read} lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"inconsistent={len(self.inconsistent)} nonmonotonic={len(self.nonmonotonic)} "
            f"gaps={sum(len(g) for g in self.gaps.values())}"
        )


def check(
    acked: Iterable[tuple[str, int, int]],
    reads: Iterable[Iterable[tuple[int, int, str]]],
    *,
    allow_duplicates: bool = False,
) -> Verdict:
    """``acked``: (value, partition, offset) per acknowledged send. ``reads``: per consumer, the
    (partition, offset, value) it read, in order. Duplicates are allowed only for non-idempotent
    producers that retried (``allow_duplicates``)."""
    verdict = Verdict()
    at: dict[tuple[int, int], str] = {}
    where: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for consumer in reads:
        last: dict[int, int] = {}
        for partition, offset, value in consumer:
            verdict.read += 1
            if partition in last and offset <= last[partition]:
                verdict.nonmonotonic.append((partition, last[partition], offset))
            last[partition] = offset
            seen = at.setdefault((partition, offset), value)
            if seen != value:
                verdict.inconsistent.append((partition, offset, seen, value))
            where[value].add((partition, offset))
    acked_list = list(acked)
    verdict.acked = len(acked_list)
    for value, partition, offset in acked_list:
        if value not in where:
            verdict.lost.add(value)
        elif at.get((partition, offset), value) != value:
            verdict.inconsistent.append((partition, offset, value, at[(partition, offset)]))
    if not allow_duplicates:
        verdict.duplicated = {v: sorted(locs) for v, locs in where.items() if len(locs) > 1}
    by_partition: dict[int, set[int]] = defaultdict(set)
    for partition, offset in at:
        by_partition[partition].add(offset)
    for partition, offsets in by_partition.items():
        missing = sorted(set(range(min(offsets), max(offsets) + 1)) - offsets)
        if missing:
            verdict.gaps[partition] = missing
    return verdict
