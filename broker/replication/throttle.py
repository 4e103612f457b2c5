"""The replication throttle of reassignments: a token bucket per topic that limits the bytes a
leader sends to replicas being added (Kafka's ``leader.replication.throttled.rate`` for the
replicas a reassignment adds). Replicas already in sync are never throttled: the throttle slows
moving data, never acks=all traffic."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Bucket:
    rate: int
    tokens: float
    stamp: float = field(default_factory=time.monotonic)


class ReplicationThrottle:
    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def allowance(self, topic: str, rate: int) -> tuple[int, bool]:
        """How many bytes may go to a throttled replica of ``topic`` now, and whether a whole
        batch may go regardless (the bucket is full: a batch larger than a second's worth must
        still get through, at most once a second)."""
        bucket = self._buckets.get(topic)
        now = time.monotonic()
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[topic] = _Bucket(rate, float(rate), now)
        bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        return int(bucket.tokens), bucket.tokens >= rate

    def spend(self, topic: str, nbytes: int) -> None:
        bucket = self._buckets.get(topic)
        if bucket is not None:
            bucket.tokens -= nbytes

    def forget(self, topic: str) -> None:
        self._buckets.pop(topic, None)
