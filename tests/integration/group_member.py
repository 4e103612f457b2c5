"""A consumer-group member run as its own process (so a test can SIGKILL it): prints each record
as ``partition offset value`` and its assignment changes as ``ASSIGNED p,p``."""

from __future__ import annotations

import os
import sys

from confluent_kafka import Consumer


def main() -> None:
    bootstrap, group, topic = sys.argv[1:4]
    strategy = sys.argv[4] if len(sys.argv) > 4 else "range"
    manual = len(sys.argv) > 5 and sys.argv[5] == "manual"  # commit each record, then report it
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": strategy,
            "enable.auto.commit": not manual,
            # static membership when the test asks for it (KIP-345)
            **({"group.instance.id": os.environ["GROUP_INSTANCE_ID"]} if os.environ.get("GROUP_INSTANCE_ID") else {}),
            "auto.commit.interval.ms": 200,
        }
    )

    owned: set[int] = set()
    cooperative = strategy == "cooperative-sticky"  # callbacks then carry increments, not the whole set

    def report() -> None:
        print("ASSIGNED " + ",".join(str(p) for p in sorted(owned)), flush=True)

    def on_assign(_c: object, partitions: list) -> None:
        if not cooperative:
            owned.clear()
        owned.update(p.partition for p in partitions)
        report()

    def on_revoke(_c: object, partitions: list) -> None:
        owned.difference_update(p.partition for p in partitions)
        report()

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    while True:
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            if manual:
                consumer.commit(message=msg, asynchronous=False)
            print(f"{msg.partition()} {msg.offset()} {msg.value().decode()}", flush=True)


if __name__ == "__main__":
    main()
