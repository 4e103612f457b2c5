"""The leader epoch cache of one partition (KIP-101/279): for each leader epoch, the first offset
written in it, kept in ``<partition dir>/leader-epoch-checkpoint`` in Kafka's format::

    0            (format version)
    <count>
    <epoch> <start offset>

It answers OffsetForLeaderEpoch (the end offset of an epoch: where the next epoch started, or the
log end for the latest), and is cut back with the log when a follower truncates. Written
atomically through the log's ``FileIO``; a damaged file is rebuilt empty (the follower then
truncates to the high watermark, as before KIP-101).
"""

from __future__ import annotations

import bisect
import logging
from pathlib import Path

from tidelog.broker.log.io import FileIO

log = logging.getLogger(__name__)

FILE = "leader-epoch-checkpoint"
UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1


class LeaderEpochCache:
    def __init__(self, directory: Path, io: FileIO) -> None:
        self.path = directory / FILE
        self.io = io
        self.epochs: list[int] = []
        self.starts: list[int] = []
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return
        try:
            if lines[0].strip() != "0":
                raise ValueError(f"unknown version {lines[0]!r}")
            for line in lines[2 : 2 + int(lines[1])]:
                epoch, start = line.split()
                self.epochs.append(int(epoch))
                self.starts.append(int(start))
        except (ValueError, IndexError) as exc:
            log.error("%s is damaged (%s): starting with an empty epoch cache", self.path, exc)
            self.epochs, self.starts = [], []

    def _save(self) -> None:
        lines = ["0", str(len(self.epochs))] + [f"{e} {s}" for e, s in zip(self.epochs, self.starts, strict=True)]
        self.io.write_file_atomically(self.path, ("\n".join(lines) + "\n").encode())

    @property
    def latest_epoch(self) -> int:
        return self.epochs[-1] if self.epochs else UNDEFINED_EPOCH

    def assign(self, epoch: int, start_offset: int) -> None:
        """Epoch ``epoch`` began at ``start_offset`` (ignored unless it is a newer epoch)."""
        if epoch < 0 or (self.epochs and epoch <= self.epochs[-1]):
            return
        # An entry that starts at or after this one is stale (a truncated epoch): drop it.
        while self.starts and self.starts[-1] >= start_offset:
            self.epochs.pop()
            self.starts.pop()
        self.epochs.append(epoch)
        self.starts.append(start_offset)
        self._save()

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """OffsetForLeaderEpoch's answer: the largest known epoch <= ``epoch`` and the offset where
        it ended (the next epoch's start, or the log end for the latest epoch)."""
        if not self.epochs or epoch < self.epochs[0]:
            return UNDEFINED_EPOCH, UNDEFINED_OFFSET
        if epoch >= self.epochs[-1]:
            return self.epochs[-1], log_end_offset
        i = bisect.bisect_right(self.epochs, epoch)  # first epoch > requested
        return self.epochs[i - 1], self.starts[i]

    def truncate_from_end(self, end_offset: int) -> None:
        """The log was cut back to ``end_offset``: forget epochs that started at or after it."""
        changed = False
        while self.starts and self.starts[-1] >= end_offset:
            self.epochs.pop()
            self.starts.pop()
            changed = True
        if changed:
            self._save()

    def clear(self) -> None:
        if self.epochs:
            self.epochs, self.starts = [], []
            self._save()
