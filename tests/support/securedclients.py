"""Clients of a secured Tidelog broker for the ACL and User tests: the broker settings that turn the
authorizer on, SCRAM client settings, and produce/consume helpers that answer in Kafka error codes."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

SECURED = [
    "--set", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "--set", "super.users=User:ANONYMOUS",  # the PLAINTEXT listener (loopback): the test's own admin
    "--set", "sasl.enabled.mechanisms=SCRAM-SHA-512",
    "--set", "connection.failed.authentication.delay.ms=50",
]  # fmt: skip


def as_user(user: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": f"{user}-pw",
            **extra}  # fmt: skip


def produce_codes(conf: dict[str, Any], topic: str, n: int = 3) -> list[int | None]:
    """Delivery results of ``n`` records: None for delivered, else the error code. (A confluent-kafka
    KafkaError compared with None leaves a Python error pending: only codes are compared.)"""
    results: list[int | None] = []
    retries = {} if conf.get("enable.idempotence") else {"retries": 0}
    producer = Producer({**conf, "message.timeout.ms": 10000, **retries})
    for i in range(n):
        producer.produce(
            topic, f"v{i}".encode(), on_delivery=lambda err, _msg: results.append(None if err is None else err.code())
        )
    producer.flush(15)
    return results


def consume(conf: dict[str, Any], topic: str, group: str, want: int) -> tuple[list[bytes], list[KafkaError]]:
    consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values: list[bytes] = []
    errors: list[KafkaError] = []
    deadline = time.monotonic() + 15
    try:
        while len(values) < want and not errors and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                errors.append(msg.error())
            else:
                values.append(msg.value())
        if values:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values, errors


def first_error(conf: dict[str, Any], wait_s: float = 10.0) -> int | None:
    """The code of the first error a producer with ``conf`` reports while it connects (e.g.
    KafkaError._AUTHENTICATION for a refused login), None if none within ``wait_s``."""
    errors: list[KafkaError] = []
    producer = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + wait_s
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    return int(errors[0].code()) if errors else None
