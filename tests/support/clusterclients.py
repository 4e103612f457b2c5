"""Client-side helpers for cluster tests (librdkafka through confluent-kafka): an acks=all
producer that records what was acknowledged, and a reader that reads every partition of a topic
from offset 0 up to its high watermarks, asking again until they stop moving (a new leader's high
watermark catches up only once its followers fetch)."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def produce(bootstrap: str, topic: str, values: list[str], **conf: Any) -> tuple[set[str], list[str]]:
    """Send ``values`` (also as keys) with acks=all; returns (acknowledged values, error strings)."""
    acked: set[str] = set()
    errors: list[str] = []

    def report(err: Any, msg: Any) -> None:
        if err is None:
            acked.add(msg.value().decode())
        else:
            errors.append(str(err))

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2, "message.timeout.ms": 30000, **conf})
    for v in values:
        p.produce(topic, v.encode(), key=v.encode(), on_delivery=report)
        p.poll(0)
    p.flush(60)
    return acked, errors


def _ends(c: Consumer, topic: str, partitions: int) -> dict[int, int] | None:
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in range(partitions)}
    except KafkaException:
        return None
    return ends if all(e >= 0 for e in ends.values()) else None


def read_all(bootstrap: str, topic: str, partitions: int, timeout_s: float = 60.0) -> list[str]:
    """Every value in ``topic`` (all ``partitions``), in per-partition order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "read-all", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got: list[str] = []
        pos = dict.fromkeys(range(partitions), 0)
        deadline = time.monotonic() + timeout_s
        ends = _ends(c, topic, partitions)
        while time.monotonic() < deadline:
            if ends is None or all(pos[p] >= ends[p] for p in pos):
                time.sleep(1)
                again = _ends(c, topic, partitions)
                if again is not None and again == ends:
                    return got
                ends = again
                continue
            for msg in c.consume(1000, 0.5):
                if not msg.error():
                    got.append(msg.value().decode())
                    pos[msg.partition()] = msg.offset() + 1
        raise TimeoutError(f"read {len(got)} records of {topic}; positions {pos}, ends {_ends(c, topic, partitions)}")
    finally:
        c.close()
