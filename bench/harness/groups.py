"""Consumer-group workloads (issue 4): a 3-member group's consume throughput, and its failover time.

Each member is an ``rdkgroup.py member`` process pinned to the generator core; a reader thread per
member turns its JSON lines into events on one queue.

- :func:`group_consume`: the members join together (``GO`` once all are ``READY``) on a pre-filled
  topic with their partitions paused; once every member holds a share and together they hold every
  partition, ``START`` releases them and they read from the earliest offset. Throughput runs from
  the first record any member received to the last one; ``join_s`` is GO -> group formed.
- :func:`failover`: a feeder produces at a fixed rate to every partition in turn; once every partition
  flows to the 3 members, one member that owns partitions is SIGKILLed (no LeaveGroup, so the
  coordinator must wait ``session.timeout.ms``). ``rebalance_s`` = kill -> the survivors' latest
  assignments cover every partition; ``failover_s`` = kill -> every partition has delivered a record
  to its new owner since that assignment (the group is stable and records flow again).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from harness.generators import GeneratorError, python

RDKGROUP = Path(__file__).with_name("rdkgroup.py")
Event = tuple[int, dict[str, Any]]


class Member:
    """One group member process and the thread that reads its events."""

    def __init__(self, idx: int, cpu: str | None, args: list[str], events: queue.Queue[Event]) -> None:
        self.idx = idx
        cmd = [python(), str(RDKGROUP), "member", *args]
        self.proc = subprocess.Popen(
            (["taskset", "-c", cpu] if cpu else []) + cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise GeneratorError(f"group member {idx} did not start: {line}{err[-2000:]}")
        self.done: dict[str, Any] | None = None
        self._events = events
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                ev = json.loads(line)
                if ev["ev"] == "done":
                    self.done = ev
                self._events.put((self.idx, ev))

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30.0) -> None:
        """Close stdin (the member stops, prints ``done``, closes its consumer), then reap it."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self.kill()
        self._thread.join(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def _start(cpu: str | None, n: int, args: list[str], events: queue.Queue[Event]) -> list[Member]:
    members: list[Member] = []
    try:
        members.extend(Member(i, cpu, args, events) for i in range(n))
    except Exception:
        for m in members:
            m.kill()
        raise
    for m in members:
        m.send("GO\n")
    return members


def group_consume(
    cpu: str | None,
    bootstrap: str,
    topic: str,
    partitions: int,
    count: int,
    members: int,
    session_ms: int,
    timeout: float = 300,
) -> dict[str, Any]:
    """``members`` members form a group on a pre-filled topic, then read ``count`` records from earliest."""
    events: queue.Queue[Event] = queue.Queue()
    group = f"bench-g-{time.monotonic_ns()}"
    args = ["--bootstrap", bootstrap, "--topic", topic, "--group", group, "--session-timeout-ms", str(session_ms)]
    procs = _start(cpu, members, [*args, "--gated"], events)
    t_go = time.monotonic()
    counts = [0] * members
    assigned: dict[int, list[int]] = {}
    everyone = list(range(members))
    try:
        deadline = t_go + timeout
        formed = 0.0
        while sum(counts) < count and time.monotonic() < deadline:
            if not formed and all(assigned.get(i) for i in everyone) and _covered(assigned, everyone, partitions):
                formed = time.monotonic()
                for m in procs:
                    m.send("START\n")
            try:
                idx, ev = events.get(timeout=0.2)
            except queue.Empty:
                continue
            if ev["ev"] == "progress":
                counts[idx] = ev["count"]
            elif ev["ev"] in ("assign", "revoke"):
                assigned[idx] = ev["parts"] if ev["ev"] == "assign" else []
    finally:
        for m in procs:
            m.finish()
    done = [m.done for m in procs]
    if any(d is None for d in done) or not formed:
        codes = [m.proc.returncode for m in procs]
        raise GeneratorError(f"group not formed or member(s) ended without a summary: {codes}, {assigned}")
    firsts = [d["t_first"] for d in done if d and d["count"]]
    got = sum(d["count"] for d in done if d)
    t_first, t_last = min(firsts), max(d["t_last"] for d in done if d)
    return {
        "records": min(got, count),
        "seconds": max(t_last - t_first, 1e-9),
        "consumed": got,
        "per_member": [d["count"] for d in done if d],
        "duplicates": max(0, got - count),
        "join_s": round(formed - t_go, 3),
        "errors": max(0, count - got),
    }


def _covered(assigned: dict[int, list[int]], alive: list[int], partitions: int) -> bool:
    return sorted(p for i in alive for p in assigned.get(i, [])) == list(range(partitions))


def failover(
    cpu: str | None,
    bootstrap: str,
    topic: str,
    partitions: int,
    members: int,
    session_ms: int,
    rate: float,
    timeout: float = 120,
) -> dict[str, Any]:
    """Kill one of ``members`` while records flow; time until the survivors own and read every partition."""
    events: queue.Queue[Event] = queue.Queue()
    group = f"bench-f-{time.monotonic_ns()}"
    args = ["--bootstrap", bootstrap, "--topic", topic, "--group", group, "--session-timeout-ms", str(session_ms)]
    feed_cmd = [python(), str(RDKGROUP), "feed", "--bootstrap", bootstrap, "--topic", topic]
    feed_cmd += ["--partitions", str(partitions), "--rate", str(rate)]
    feed = subprocess.Popen(
        (["taskset", "-c", cpu] if cpu else []) + feed_cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs: list[Member] = []
    assigned: dict[int, list[int]] = {}
    assigned_at: dict[int, float] = {}
    flowing: dict[int, dict[int, float]] = {}  # member -> partition -> first record since assignment

    def handle(idx: int, ev: dict[str, Any]) -> None:
        if ev["ev"] == "assign":
            assigned[idx], assigned_at[idx], flowing[idx] = ev["parts"], ev["t"], {}
        elif ev["ev"] == "revoke":
            assigned[idx], flowing[idx] = [], {}
        elif ev["ev"] == "first":
            flowing.setdefault(idx, {})[ev["p"]] = ev["t"]

    def all_flowing(alive: list[int]) -> bool:
        return _covered(assigned, alive, partitions) and all(
            set(flowing.get(i, {})) >= set(assigned.get(i, [])) for i in alive
        )

    def wait_for(cond: Any, until: float) -> bool:
        while not cond():
            left = until - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(queue.Empty):
                handle(*events.get(timeout=min(left, 0.5)))
        return True

    try:
        procs = _start(cpu, members, [*args, "--track"], events)
        everyone = list(range(members))
        if not wait_for(lambda: all_flowing(everyone), time.monotonic() + timeout):
            raise GeneratorError(f"group never covered every partition: {assigned}")
        time.sleep(1.0)  # steady state
        while not events.empty():
            handle(*events.get())
        victim = next(i for i in everyone if assigned.get(i))
        victim_parts = len(assigned[victim])
        t_kill = time.monotonic()
        procs[victim].kill()
        alive = [i for i in everyone if i != victim]
        stable = lambda: all_flowing(alive) and all(assigned_at.get(i, 0) > t_kill for i in alive)  # noqa: E731
        if not wait_for(stable, t_kill + timeout):
            raise GeneratorError(f"group not stable {timeout:.0f} s after the kill: {assigned}, {flowing}")
        t_assigned = max(assigned_at[i] for i in alive)
        t_flowing = max(t for i in alive for t in flowing[i].values())
        return {
            "records": 0,
            "victim_partitions": victim_parts,
            "rebalance_s": round(t_assigned - t_kill, 3),
            "failover_s": round(t_flowing - t_kill, 3),
            "session_timeout_ms": session_ms,
            "rate": rate,
        }
    finally:
        for m in procs:
            m.finish()
        if feed.poll() is None:
            assert feed.stdin is not None
            feed.stdin.close()
            try:
                feed.wait(40)
            except subprocess.TimeoutExpired:
                feed.kill()
                feed.wait()
