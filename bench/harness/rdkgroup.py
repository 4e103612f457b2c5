"""librdkafka consumer-group processes (confluent-kafka), driven over stdin/stdout by ``groups``.

Modes:

- ``member``: builds a group consumer (classic protocol, ``group.id``, ``auto.offset.reset=earliest``),
  prints ``READY``, waits for ``GO`` on stdin, subscribes and consumes until stdin reaches EOF
  (``--gated``: its partitions stay paused until ``START`` arrives on stdin). It prints JSON lines
  on stdout: ``{"ev": "progress", "count", "t"}`` every 0.1 s, ``assign`` /
  ``revoke`` with the partitions and the time, with ``--track`` one ``first`` event per partition
  for the first record after each assignment, and ``done`` with the count and the first/last
  record times at the end.
- ``feed``: produces ``--size`` byte records at ``--rate`` per second, partition by partition in
  turn, until stdin reaches EOF; prints ``{"records", "errors"}``.

All times are ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every process of the machine).
Standalone: imports nothing from the harness.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition


def _emit(**ev: Any) -> None:
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


def _watch_stdin(stop: threading.Event, start: threading.Event | None = None) -> None:
    for line in sys.stdin:
        if line.strip() == "START" and start is not None:
            start.set()
    stop.set()


def _member(a: argparse.Namespace) -> int:
    seen: set[int] = set()
    start = threading.Event()
    released = [not a.gated]

    def on_assign(c: Consumer, parts: list[TopicPartition]) -> None:
        seen.clear()
        c.assign(parts)
        if not released[0]:  # --gated: hold every partition until the parent says START
            c.pause(parts)
        _emit(ev="assign", t=time.monotonic(), parts=sorted(p.partition for p in parts))

    def on_revoke(_c: Consumer, parts: list[TopicPartition]) -> None:
        _emit(ev="revoke", t=time.monotonic(), parts=sorted(p.partition for p in parts))

    c = Consumer(
        {
            "bootstrap.servers": a.bootstrap,
            "group.id": a.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
            "session.timeout.ms": a.session_timeout_ms,
            "heartbeat.interval.ms": a.heartbeat_ms,
            "partition.assignment.strategy": "range",
            "fetch.wait.max.ms": 100,
            "socket.nagle.disable": True,
            "fetch.queue.backoff.ms": 1,  # see rdkgen: librdkafka >= 2.4 otherwise idles 1 s
        }
    )
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop, start), daemon=True).start()
    c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke)
    count, t_first, t_last, next_progress = 0, 0.0, 0.0, 0.0
    while not stop.is_set():
        if start.is_set() and not released[0]:
            released[0] = True
            c.resume(c.assignment())
        msgs = c.consume(num_messages=1000, timeout=0.1)
        now = time.monotonic()
        good = 0
        for m in msgs:
            if m.error() is not None:
                continue
            good += 1
            part = m.partition()
            if a.track and part is not None and part not in seen:
                seen.add(part)
                _emit(ev="first", t=now, p=part)
        if good:
            t_first = t_first or now
            t_last = now
            count += good
        if now >= next_progress:
            _emit(ev="progress", count=count, t=now)
            next_progress = now + 0.1
    _emit(ev="done", count=count, t_first=t_first, t_last=t_last)
    c.close()
    return 0


def _feed(a: argparse.Namespace) -> int:
    errors = [0]

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors[0] += 1

    p = Producer(
        {
            "bootstrap.servers": a.bootstrap,
            "linger.ms": 1,
            "socket.nagle.disable": True,
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
        }
    )
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    value = b"x" * a.size
    interval, t0, i = 1.0 / a.rate, time.monotonic(), 0
    while not stop.is_set():
        due = int((time.monotonic() - t0) / interval) + 1
        while i < due:
            try:
                p.produce(a.topic, value, partition=i % a.partitions)
            except BufferError:
                break
            i += 1
        p.poll(0)
        time.sleep(min(interval, 0.005))
    left = p.flush(30)
    print(json.dumps({"records": i - left, "errors": errors[0] + left}), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["member", "feed"])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", default="bench-group")
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-ms", type=int, default=1000)
    ap.add_argument("--gated", action="store_true", help="member: fetch nothing before START on stdin")
    ap.add_argument("--track", action="store_true", help="report each partition's first record per assignment")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--size", type=int, default=1024)
    a = ap.parse_args()
    return _member(a) if a.mode == "member" else _feed(a)


if __name__ == "__main__":
    sys.exit(main())
