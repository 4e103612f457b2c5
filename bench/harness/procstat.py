"""CPU seconds and resident memory of a broker's process tree, read from ``/proc``.

Used by ``runner`` to charge broker CPU to each workload (delta of utime+stime over the window) and
to sample RSS while a workload runs. Linux only; no dependencies.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all threads' child lists)."""
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                kids.extend(int(x) for x in (task / "children").read_text().split())
            except OSError:
                continue
    except OSError:
        return []
    return kids


Pids = int | Sequence[int]


def tree(pid: Pids) -> list[int]:
    """``pid`` (or each of several roots) and all descendants (a broker may fork workers)."""
    out: list[int] = []
    todo = [pid] if isinstance(pid, int) else list(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: Pids) -> float:
    """utime+stime of ``pid`` and its live descendants, in seconds."""
    total = 0
    for p in tree(pid):
        fields = _stat_fields(p)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / _TICKS


def rss_bytes(pid: Pids) -> int:
    """Resident set size of ``pid`` and its live descendants, in bytes."""
    total = 0
    for p in tree(pid):
        fields = _stat_fields(p)
        if fields is not None:
            total += int(fields[21]) * _PAGE  # rss (field 24), in pages
    return total


@dataclass
class Window:
    """CPU and peak RSS of a process tree over one measured window."""

    cpu_s: float = 0.0
    rss_peak: int = 0
    rss_end: int = 0


class Meter:
    """Context manager measuring one window: CPU delta, RSS sampled every ``interval`` s."""

    def __init__(self, pid: Pids, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.result = Window()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._cpu0 = 0.0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.result.rss_peak = max(self.result.rss_peak, rss_bytes(self.pid))

    def __enter__(self) -> Meter:
        self._cpu0 = cpu_seconds(self.pid)
        self.result.rss_peak = rss_bytes(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.result.cpu_s = cpu_seconds(self.pid) - self._cpu0
        self.result.rss_end = rss_bytes(self.pid)
        self.result.rss_peak = max(self.result.rss_peak, self.result.rss_end)
