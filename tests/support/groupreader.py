"""A confluent-kafka consumer in a group that has read a given number of records (tests then commit,
inspect and close it)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer


def read_in_group(bootstrap: str, group: str, topic: str, count: int, timeout: float = 30.0) -> Consumer:
    """Subscribe with manual commits from the earliest offset and read ``count`` records (or until
    ``timeout``); the caller owns the returned consumer."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        seen += msg is not None and msg.error() is None
    return consumer
