"""A librdkafka (confluent-kafka) client for test_operator.py, run as a subprocess whose
/etc/resolv.conf points at the local cluster's DNS (a private mount namespace), so the brokers'
advertised names (``demo-0.demo-brokers.NS.svc``) resolve from the host as they do in a pod.

    kafka_cluster_client.py produce BOOTSTRAP TOPIC PREFIX COUNT   -> prints the acked keys (JSON)
    kafka_cluster_client.py consume BOOTSTRAP TOPIC COUNT          -> prints the keys read (JSON)
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer


def produce(bootstrap: str, topic: str, prefix: str, count: int) -> list[str]:
    acked: list[str] = []
    errors: list[str] = []

    def report(err: Any, msg: Any) -> None:
        if err is None:
            acked.append(msg.key().decode())
        else:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "message.timeout.ms": 60000, "linger.ms": 5})  # fmt: skip
    for i in range(count):
        key = f"{prefix}-{i}"
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=f"value of {key}".encode(), on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(90)
    if errors:
        print(f"{len(errors)} records failed: {errors[:3]}", file=sys.stderr)
    return acked


def consume(bootstrap: str, topic: str, count: int, timeout_s: float = 90.0) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    keys: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(set(keys)) < count and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    print(f"consume error: {error}", file=sys.stderr)
                continue
            key = msg.key()
            if key is not None:
                keys.append(key.decode())
    finally:
        consumer.close()
    return keys


def main(argv: list[str]) -> int:
    cmd, bootstrap, topic = argv[0], argv[1], argv[2]
    if cmd == "produce":
        print(json.dumps(produce(bootstrap, topic, argv[3], int(argv[4]))))
    else:
        print(json.dumps(consume(bootstrap, topic, int(argv[3]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
