"""A librdkafka (confluent-kafka) client for test_operator.py, run as a subprocess whose
/etc/resolv.conf points at the local cluster's DNS (a private mount namespace), so the brokers'
advertised names (``demo-0.demo-brokers.NS.svc``) resolve from the host as they do in a pod.

    kafka_cluster_client.py produce BOOTSTRAP TOPIC PREFIX COUNT   -> prints the acked keys (JSON)
    kafka_cluster_client.py consume BOOTSTRAP TOPIC COUNT          -> prints the keys read (JSON)
    kafka_cluster_client.py produce-until BOOTSTRAP TOPIC PREFIX STOPFILE
                                     -> a record every 20 ms until STOPFILE exists; {"acked", "errors"}
    kafka_cluster_client.py metadata BOOTSTRAP                     -> the brokers (JSON); exit 1 if refused

``KAFKA_CLIENT_CONFIG`` (JSON, optional) is added to every client's librdkafka configuration, e.g.
``{"security.protocol": "SSL", "ssl.ca.location": "/tmp/ca.crt"}`` (test_operator_tls.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer


def extra() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(os.environ.get("KAFKA_CLIENT_CONFIG") or "{}")
    return config


def produce(bootstrap: str, topic: str, prefix: str, count: int) -> list[str]:
    acked: list[str] = []
    errors: list[str] = []

    def report(err: Any, msg: Any) -> None:
        if err is None:
            acked.append(msg.key().decode())
        else:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "message.timeout.ms": 60000, "linger.ms": 5, **extra()})  # fmt: skip
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
                         "auto.offset.reset": "earliest", "enable.auto.commit": False, **extra()})  # fmt: skip
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


def produce_until(bootstrap: str, topic: str, prefix: str, stop: Path) -> dict[str, Any]:
    """Keep producing (acks=all, idempotent) while something else happens, e.g. a rolling restart."""
    acked: list[str] = []
    errors: list[str] = []

    def report(err: Any, msg: Any) -> None:
        if err is None:
            acked.append(msg.key().decode())
        else:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "message.timeout.ms": 120000, **extra()})  # fmt: skip
    i = 0
    while not stop.exists():
        key = f"{prefix}-{i}"
        producer.produce(topic, key=key.encode(), value=f"value of {key}".encode(), on_delivery=report)
        producer.poll(0.02)
        i += 1
    producer.flush(150)
    return {"sent": i, "acked": acked, "errors": errors[:5], "failed": len(errors)}


def metadata(bootstrap: str) -> list[str]:
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - this command only

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **extra()})
    md = admin.list_topics(timeout=6)
    return sorted(f"{b.host}:{b.port}" for b in md.brokers.values())


def main(argv: list[str]) -> int:
    cmd, bootstrap = argv[0], argv[1]
    if cmd == "metadata":
        try:
            print(json.dumps(metadata(bootstrap)))
        except Exception as exc:  # a refused connection: the caller checks the exit code and message
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        return 0
    topic = argv[2]
    if cmd == "produce-until":
        print(json.dumps(produce_until(bootstrap, topic, argv[3], Path(argv[4]))))
    elif cmd == "produce":
        print(json.dumps(produce(bootstrap, topic, argv[3], int(argv[4]))))
    else:
        print(json.dumps(consume(bootstrap, topic, int(argv[3]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
