"""The pure decisions of the reconcile runbook: no I/O, unit-tested on their own.

- ``set_condition``: metav1.Condition bookkeeping (lastTransitionTime moves only when status does);
- ``plan_scaling``: given the spec, the StatefulSet and the scaling block in status, how many brokers
  the StatefulSet should have now and what the scaling block becomes;
- ``drain_blocker``: why the brokers being removed cannot be drained (None if they can);
- ``roll_order``: which brokers to restart, one at a time, the controller last;
- ``topic_owners``: which Topic resource owns each Kafka topic (the oldest; the others conflict).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from tidelog.operator import schema
from tidelog.operator.models import Condition, ScalingStatus


def set_condition(
    conditions: list[Condition], type_: str, status: bool, reason: str, message: str, now: str, generation: int | None
) -> list[Condition]:
    """``conditions`` with ``type_`` set; lastTransitionTime kept unless the status changed."""
    value: Literal["True", "False"] = "True" if status else "False"
    out = [c for c in conditions if c.type != type_]
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == value else now
    out.append(
        Condition(
            type=type_,
            status=value,
            reason=reason,
            message=message[:32768],
            last_transition_time=since,
            observed_generation=generation,
        )
    )
    order = {"Ready": 0, "Reconciling": 1, "Degraded": 2, "Warning": 3}
    return sorted(out, key=lambda c: (order.get(c.type, 9), c.type))


def condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


@dataclass
class ScalingPlan:
    """How many brokers the StatefulSet gets in this pass, and the scaling block to write."""

    statefulset_replicas: int
    scaling: ScalingStatus | None


def plan_scaling(wanted: int, current: int | None, scaling: ScalingStatus | None, now: str) -> ScalingPlan:
    """Scale up at once (rebalance once the new brokers are in); scale down only after a drain.

    ``current`` is the StatefulSet's replicas (None: no StatefulSet yet). A scale-down keeps
    ``current`` brokers until the scaling block reaches ``Shrinking`` (set by the runbook once the
    brokers being removed hold nothing); a scaling block for another target is replaced.
    """
    if current is None:
        return ScalingPlan(wanted, None)
    busy = scaling is not None and scaling.phase != "Idle"
    if busy and scaling is not None and scaling.to_replicas == wanted:
        if scaling.phase == "Shrinking":
            return ScalingPlan(wanted, scaling)
        if wanted < current:
            return ScalingPlan(current, scaling)
        return ScalingPlan(wanted, scaling)
    if wanted > current:
        added = list(range(current, wanted))
        scaling = ScalingStatus(phase="AwaitingBrokers", from_replicas=current, to_replicas=wanted, brokers=added,
                                started_at=now, message=f"adding brokers {added}")  # fmt: skip
        return ScalingPlan(wanted, scaling)
    if wanted < current:
        removed = list(range(wanted, current))
        scaling = ScalingStatus(phase="Draining", from_replicas=current, to_replicas=wanted, brokers=removed,
                                started_at=now, message=f"draining brokers {removed}")  # fmt: skip
        return ScalingPlan(current, scaling)
    # wanted == current with no scaling for it: a scale-down cancelled before it shrank, or nothing.
    return ScalingPlan(wanted, None)


def drain_blocker(remaining: int, replication_factors: dict[str, int]) -> str | None:
    """Why ``remaining`` brokers cannot hold every topic (a replication factor above them)."""
    too_big = sorted(t for t, rf in replication_factors.items() if rf > remaining)
    if not too_big:
        return None
    shown = ", ".join(f"{t} (RF {replication_factors[t]})" for t in too_big[:5])
    more = f" and {len(too_big) - 5} more" if len(too_big) > 5 else ""
    return (
        f"cannot drain down to {remaining} brokers: topics {shown}{more} need more brokers; "
        "lower their replication factor or keep the replicas"
    )


def roll_order(stale: Iterable[int], controller_id: int | None) -> list[int]:
    """Brokers needing a restart, highest ordinal first, the controller last."""
    order = sorted(set(stale), reverse=True)
    if controller_id is not None and controller_id in order:
        order.remove(controller_id)
        order.append(controller_id)
    return order


def topic_name(topic: dict[str, Any]) -> str:
    return str(topic["spec"].get("topicName") or topic["metadata"]["name"])


def topic_owners(topics: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Kafka topic name -> uid of the Topic resource that owns it (oldest creationTimestamp, then name)."""
    owners: dict[str, tuple[str, str, str]] = {}
    for t in topics:
        meta = t["metadata"]
        key = (meta.get("creationTimestamp", ""), meta["name"], meta["uid"])
        name = topic_name(t)
        if name not in owners or key < owners[name]:
            owners[name] = key
    return {name: key[2] for name, key in owners.items()}


def evacuation_moves(
    placement: dict[tuple[str, int], list[int]], removing: Iterable[int], remaining: Iterable[int]
) -> dict[tuple[str, int], list[int]]:
    """New replica lists moving every replica off ``removing`` onto the least-loaded ``remaining``
    brokers (each replaced in place, so a leader's replacement is the new preferred leader).
    Partitions already clear are left out. One pass for all the brokers being removed, so a
    replica never lands on another broker that is leaving."""
    gone, keep = set(removing), sorted(set(remaining))
    load = dict.fromkeys(keep, 0)
    for replicas in placement.values():
        for b in replicas:
            if b in load:
                load[b] += 1
    moves: dict[tuple[str, int], list[int]] = {}
    for tp in sorted(placement):
        replicas = placement[tp]
        if not gone.intersection(replicas):
            continue
        new = list(replicas)
        for i, b in enumerate(replicas):
            if b not in gone:
                continue
            candidates = [c for c in keep if c not in new]
            if not candidates:
                raise ValueError(f"{tp[0]}-{tp[1]}: no broker left to take the replica on broker {b}")
            pick = min(candidates, key=lambda c: (load[c], c))
            new[i] = pick
            load[pick] += 1
        moves[tp] = new
    return moves


def status_patch(status: Any) -> dict[str, Any]:
    """A status dataclass as a JSON merge patch: the top-level fields that are None become null
    (removed), so a finished scaling or roll block disappears from the resource."""
    out: dict[str, Any] = schema.dump(status)
    for f in dataclasses.fields(status):
        if getattr(status, f.name) is None:
            out[schema.json_name(f)] = None
    return out


def rebalance_missed(placement: Iterable[list[int]], added: Iterable[int], brokers: int) -> bool:
    """A finished rebalance left an added broker empty although every broker should hold at least
    one replica (the balancer keeps brokers within one replica of each other, so with at least two
    replicas per broker none is left empty)."""
    replicas = [list(r) for r in placement]
    if sum(len(r) for r in replicas) < 2 * brokers:
        return False
    held = {b for r in replicas for b in r}
    return any(b not in held for b in added)
