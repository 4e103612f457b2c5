"""Restarts under load: SIGTERM (graceful) and SIGKILL. Every record acknowledged with acks=all is
there after the restart, at the offset it was acknowledged with; offsets stay contiguous; an
idempotent producer's retries across a SIGKILL never store a record twice."""

from __future__ import annotations

import signal
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from history import check
from tidelogbroker import RunningBroker

PARTITIONS = 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "idempotent"),
    [(signal.SIGTERM, False), (signal.SIGKILL, False), (signal.SIGKILL, True)],
    ids=["sigterm", "sigkill", "sigkill-idempotent"],
)
def test_acked_records_survive_restarts(own_broker: RunningBroker, sig: int, idempotent: bool) -> None:
    broker = own_broker
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("restart", PARTITIONS, 1)])["restart"].result(15)
    acked: dict[tuple[int, int], bytes] = {}
    failed: list[object] = []

    def report(err: object, msg: object) -> None:
        if err is None:
            acked[(msg.partition(), msg.offset())] = msg.value()  # type: ignore[attr-defined]
        else:
            failed.append(err)

    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "linger.ms": 2,
            "enable.idempotence": idempotent,
            "message.timeout.ms": 60_000,
            "reconnect.backoff.max.ms": 200,
        }
    )
    sent = 0
    for restart in range(3):
        target = len(acked) + 500
        deadline = time.monotonic() + 60
        while len(acked) < target and time.monotonic() < deadline:
            producer.produce("restart", value=b"seq-%d" % sent, key=b"k%d" % (sent % 7), on_delivery=report)
            sent += 1
            producer.poll(0)
            if sent % 200 == 0:
                producer.flush(30)
        assert len(acked) >= target, f"round {restart}: only {len(acked)} acked"
        broker.stop(sig)
        broker.restart()
    assert producer.flush(60) == 0
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition("restart", p, 0) for p in range(PARTITIONS)])
    stored: dict[tuple[int, int], bytes] = {}
    order: list[tuple[int, int, str]] = []
    ends = {p: consumer.get_watermark_offsets(TopicPartition("restart", p), 10)[1] for p in range(PARTITIONS)}
    deadline = time.monotonic() + 60
    while len(stored) < sum(ends.values()) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            stored[(msg.partition(), msg.offset())] = msg.value()
            order.append((msg.partition(), msg.offset(), msg.value().decode()))
    consumer.close()
    verdict = check([(v.decode(), p, o) for (p, o), v in acked.items()], [order], allow_duplicates=not idempotent)
    assert verdict.ok, verdict.summary()
    for p in range(PARTITIONS):
        assert sorted(o for (q, o) in stored if q == p) == list(range(ends[p])), f"partition {p}: not all read"
    assert len(acked) >= 1500
