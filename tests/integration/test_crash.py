"""Crash safety: a child appends at full speed and is SIGKILLed at random moments, many times.

After each kill the log is reopened (recovering from the checkpointed recovery point) and checked:
every batch the child reported appended or flushed is there, intact and in order; offsets are
contiguous from 0; every record's bytes match what was written; the files end on batch boundaries.
The next round appends to the same directory, so recovery runs on an ever longer log.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from logtesting import read_all

from tidelog.broker.log.manager import LogManager

CHILD = Path(__file__).with_name("crash_child.py")
ROUNDS = int(os.environ.get("TIDELOG_CRASH_ROUNDS", "12"))


def _kill_at_random(data_dir: Path, seed: int) -> tuple[int, int]:
    """Run the child until killed; returns (last offset reported appended, last recovery point)."""
    rng = random.Random(seed)
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    first = child.stdout.readline()  # wait until it is appending
    assert first.startswith(b"A "), child.stderr.read() if child.stderr else first
    time.sleep(rng.uniform(0.05, 0.6))
    child.send_signal(signal.SIGKILL)
    out, err = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, err.decode()
    appended, flushed = int(first.split()[1]), -1
    for line in (first + out).splitlines():
        kind, _, number = line.partition(b" ")
        if kind == b"A" and number.strip():
            appended = int(number)
        elif kind == b"F" and number.strip():
            flushed = int(number)
    return appended, flushed


def _tear_the_tail(directory: Path, seed: int) -> None:
    """Model a kill in the middle of a write: a prefix of a batch after the last complete one."""
    from tidelog.broker.protocol.records import Record, build_batch

    active = max(directory.glob("*.log"))
    batch = build_batch([Record(0, 0, None, b"torn" * 5000)])
    with active.open("ab") as f:
        f.write(batch[: random.Random(seed).randint(1, len(batch) - 1)])


@pytest.mark.slow
def test_sigkill_during_appends_loses_nothing_reported(tmp_path: Path) -> None:
    from crash_child_check import value_for

    data_dir = tmp_path / "data"
    last_appended = -1
    for round_no in range(ROUNDS):
        appended, flushed = _kill_at_random(data_dir, seed=1000 + round_no)
        assert appended > last_appended
        if round_no % 2:
            _tear_the_tail(data_dir / "crash-0", seed=round_no)
        manager = LogManager.open(data_dir)
        try:
            plog = manager.get("crash", 0)
            assert plog is not None
            # Every reported append is there (SIGKILL keeps the page cache), and so every flush
            # (a recovery point is the offset after the last flushed record).
            assert plog.log_end_offset > appended
            assert plog.log_end_offset >= flushed
            records = read_all(plog)
            assert [r.offset for r in records] == list(range(plog.log_end_offset))
            for record in records:
                assert record.value == value_for(record.offset, len(record.value or b""))
            for segment in plog.segments:
                assert segment.handle.path.stat().st_size == segment.size  # ends on a batch boundary
            last_appended = plog.log_end_offset - 1
        finally:
            manager.close_sync()
