"""One partition's log: an ordered list of segments, the last one active.

Owns offsets (log start offset, log end offset, recovery point), appends as leader (assigning
offsets by patching base offsets in the producer's own buffer) or as follower (keeping the leader's
offsets), reads batch-aligned file regions, finds offsets by timestamp, truncates, rolls, flushes,
and recovers after a crash. Retention and compaction live in ``retention`` and ``cleaner``; they
change the segment list only through ``replace_segments`` and ``delete_segments`` here.
"""

from __future__ import annotations

import bisect
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, NoReturn

from tidelog.broker.log import appender
from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.files import FileRegion, HandleCache
from tidelog.broker.log.io import DEFAULT_IO, FileIO
from tidelog.broker.log.segment import (
    CLEANED_SUFFIX,
    DELETED_SUFFIX,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    BatchInfo,
    LogSegment,
)
from tidelog.broker.protocol.errors import KafkaStorageError, OffsetOutOfRangeError
from tidelog.broker.protocol.records import iter_records

log = logging.getLogger(__name__)

_assign_offsets = appender.assign_offsets
_time_ns = time.time_ns
_SEGMENT_NAME = re.compile(r"^(\d{20})\.log$")


def now_ms() -> int:
    return _time_ns() // 1_000_000


class AppendInfo(NamedTuple):
    """What an append did: offsets assigned, the append time stamped (-1 for CreateTime)."""

    first_offset: int
    last_offset: int
    log_append_time: int
    log_start_offset: int
    records: int
    bytes: int


_tuple_new = tuple.__new__  # AppendInfo from one tuple: cheaper than its keyword-capable __new__


@dataclass(slots=True)
class ReadInfo:
    """A read's answer: a pinned file region (or None when nothing qualifies) and the log's state."""

    region: FileRegion | None
    log_start_offset: int
    log_end_offset: int

    def release(self) -> None:
        if self.region is not None:
            self.region.release()


class PartitionLog:
    """A partition directory of segments. Not thread-safe: one owner (the event loop) calls it."""

    def __init__(self, directory: Path, config: LogConfig, io: FileIO, cache: HandleCache) -> None:
        self.directory = directory
        self.config = config
        self.io = io
        self.cache = cache
        self.segments: list[LogSegment] = []
        self._bases: list[int] = []
        self.log_start_offset = 0
        self.recovery_point = 0
        self.unflushed_messages = 0
        self.last_flush_ms = now_ms()
        self.pending_deletes: list[tuple[int, LogSegment]] = []  # (due ms, renamed segment)
        self.offline_reason: str | None = None

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        config: LogConfig,
        *,
        recovery_point: int = 0,
        log_start_offset: int = 0,
        io: FileIO = DEFAULT_IO,
        cache: HandleCache | None = None,
        clock_ms: int | None = None,
    ) -> PartitionLog:
        """Open (creating if needed) and recover the log in ``directory``: only segments at or after
        ``recovery_point`` are rescanned."""
        directory.mkdir(parents=True, exist_ok=True)
        self = cls(directory, config, io, cache or HandleCache())
        now = clock_ms if clock_ms is not None else now_ms()
        self._finish_interrupted_swaps()
        bases = sorted(int(m.group(1)) for p in directory.iterdir() if (m := _SEGMENT_NAME.match(p.name)))
        for base in bases:
            self._add(LogSegment.open_existing(directory, base, config, io, self.cache))
        if not self.segments:
            start = max(log_start_offset, recovery_point)
            self._add(LogSegment.create(directory, start, config, io, self.cache, now))
        self._recover(recovery_point)
        self.log_start_offset = max(log_start_offset, self.segments[0].base_offset)
        self.log_start_offset = min(self.log_start_offset, self.log_end_offset)
        self.active.handle.keep_open = True
        return self

    def _finish_interrupted_swaps(self) -> None:
        """Compaction writes ``.cleaned`` then renames to ``.swap``: a crash leaves either. Drop
        ``.cleaned`` files (the originals are intact); complete a ``.swap`` (the originals it replaces
        were about to go). Left-over ``.deleted`` files are removed."""
        for path in sorted(self.directory.iterdir()):
            if path.name.endswith((CLEANED_SUFFIX, DELETED_SUFFIX)):
                self.io.unlink(path)
        for path in sorted(self.directory.iterdir()):
            if not path.name.endswith(LOG_SUFFIX + SWAP_SUFFIX):
                continue
            base = int(path.name[:20])
            swap = LogSegment.open_existing(self.directory, base, self.config, self.io, self.cache, SWAP_SUFFIX)
            swap.recover()
            end = swap.next_offset if swap.next_offset is not None else base
            for other in sorted(self.directory.iterdir()):
                m = _SEGMENT_NAME.match(other.name)
                if m and base <= int(m.group(1)) < max(end, base + 1):
                    old = LogSegment(self.directory, int(m.group(1)), self.config, self.io, self.cache)
                    old.delete_files()
            swap.rename_suffix("")
            swap.close()
            log.warning("%s: completed a compaction swap interrupted at offset %d", self.directory.name, base)

    def _recover(self, recovery_point: int) -> None:
        # Segments wholly below the recovery point were flushed: trust them. Rescan the rest.
        first = max(bisect.bisect_right(self._bases, recovery_point) - 1, 0)
        for i in range(first, len(self.segments)):
            segment = self.segments[i]
            truncated = segment.recover(recovery_point if i == first else None)
            if truncated:
                log.warning(
                    "%s: truncated %d bytes of torn or corrupt data from %s",
                    self.directory.name,
                    truncated,
                    segment.handle.path.name,
                )
                # Nothing after a corrupt point can be trusted to follow on: drop later segments.
                for later in self.segments[i + 1 :]:
                    log.warning("%s: removing %s after the corrupt point", self.directory.name, later.handle.path.name)
                    later.delete_files()
                del self.segments[i + 1 :]
                del self._bases[i + 1 :]
                break
        # An empty trailing segment keeps its base offset as the log end.
        self.recovery_point = min(recovery_point, self.log_end_offset)

    def _add(self, segment: LogSegment) -> None:
        self.segments.append(segment)
        self._bases.append(segment.base_offset)

    # -- state -----------------------------------------------------------------------------------

    @property
    def active(self) -> LogSegment:
        return self.segments[-1]

    @property
    def log_end_offset(self) -> int:
        nxt = self.active.next_offset
        return nxt if nxt is not None else self.active.base_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def _check_online(self) -> None:
        if self.offline_reason is not None:
            raise KafkaStorageError(f"{self.directory.name} is offline: {self.offline_reason}")

    # -- append ----------------------------------------------------------------------------------

    def append_as_leader(self, buf: memoryview, *, leader_epoch: int = 0, clock_ms: int | None = None) -> AppendInfo:
        """Validate the producer's batches, assign offsets in place, append. ``buf`` must be writable:
        base offsets and the leader epoch are patched into it (both outside the CRC).

        The produce hot path: every line here runs once per partition per request (see
        ``appender.assign_offsets`` and ``LogSegment.append`` for the rest)."""
        if self.offline_reason is not None:
            self._check_online()
        now = clock_ms if clock_ms is not None else _time_ns() // 1_000_000
        segment = self.segments[-1]
        first = segment.next_offset
        if first is None:
            first = self.log_end_offset
        config = self.config
        infos = _assign_offsets(buf, config, now, first, leader_epoch)
        try:  # _append, inline
            if not segment.append(buf, infos, now):
                self.roll(now, base_offset=first).append(buf, infos, now)  # empty: it takes them
        except KafkaStorageError as exc:
            self._storage_failed(exc)
        last = infos[-1][2]
        records = last - first + 1  # offsets were assigned without gaps
        self.unflushed_messages += records
        if self.unflushed_messages >= config.flush_messages:
            self.flush()
        append_time = infos[-1][3] if config.append_settings[2] else -1  # LogAppendTime: the time stamped
        return _tuple_new(AppendInfo, (first, last, append_time, self.log_start_offset, records, len(buf)))

    def append_as_follower(self, buf: memoryview, *, clock_ms: int | None = None) -> AppendInfo:
        """Append a leader's batches as they are (offsets, epochs, timestamps kept)."""
        self._check_online()
        now = clock_ms if clock_ms is not None else now_ms()
        batches = appender.validate_for_follower(buf, self.log_end_offset)
        infos = [(pos, h.size, h.last_offset, h.max_timestamp) for pos, h in batches]
        records = sum(h.records_count for _, h in batches)
        self._append(buf, infos, now, records, batches[0][1].base_offset)
        return AppendInfo(
            batches[0][1].base_offset, batches[-1][1].last_offset, -1, self.log_start_offset, records, len(buf)
        )

    def _append(self, buf: memoryview, infos: list[BatchInfo], now: int, records: int, first_offset: int) -> None:
        try:
            if not self.segments[-1].append(buf, infos, now):
                self.roll(now, base_offset=first_offset).append(buf, infos, now)  # empty: it takes them
        except KafkaStorageError as exc:
            self._storage_failed(exc)
        self.unflushed_messages += records
        if self.unflushed_messages >= self.config.flush_messages:
            self.flush()

    def _storage_failed(self, exc: KafkaStorageError) -> NoReturn:
        """An append failed: the log goes offline if the file could not be put back; re-raise."""
        if "cannot undo" in str(exc):
            self.offline_reason = str(exc)
        raise exc

    def roll(self, clock_ms: int | None = None, *, base_offset: int | None = None) -> LogSegment:
        """Start a new active segment at the log end offset (or ``base_offset`` for a follower gap)."""
        now = clock_ms if clock_ms is not None else now_ms()
        old = self.active
        base = max(self.log_end_offset, base_offset or 0)
        if old.size == 0 and old.base_offset == base:
            return old
        old.on_roll()
        old.handle.keep_open = False
        if old.size == 0:
            old.delete_files()
            self.segments.pop()
            self._bases.pop()
        segment = LogSegment.create(self.directory, base, self.config, self.io, self.cache, now)
        segment.handle.keep_open = True
        self._add(segment)
        return segment

    # -- flush -----------------------------------------------------------------------------------

    def flush(self, clock_ms: int | None = None) -> None:
        """fsync every segment with unflushed data; the recovery point becomes the log end offset."""
        end = self.log_end_offset
        for segment in self.segments:
            if segment.dirty:
                segment.flush()
        self.recovery_point = end
        self.unflushed_messages = 0
        self.last_flush_ms = clock_ms if clock_ms is not None else now_ms()

    # -- read ------------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, *, max_offset: int | None = None, min_one: bool = True) -> ReadInfo:
        """Whole batches from the batch holding ``offset``: at most ``max_bytes`` (but at least one
        batch if ``min_one``), none at or past ``max_offset`` (the high watermark; default the log
        end). The caller owns the returned region and must ``release()`` it."""
        self._check_online()
        end = self.log_end_offset
        if offset < self.log_start_offset or offset > end:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self.log_start_offset}, {end}] of {self.directory.name}"
            )
        limit = end if max_offset is None else min(max_offset, end)
        i = max(bisect.bisect_right(self._bases, offset) - 1, 0)
        while i < len(self.segments) and offset < limit:
            segment = self.segments[i]
            next_base = self._bases[i + 1] if i + 1 < len(self.segments) else None
            max_position = segment.size
            if next_base is None or limit < next_base:
                found = segment.find_batch(limit) if limit < end else None
                max_position = found[0] if found else segment.size
            region = segment.read(offset, max_bytes, max_position, min_one=min_one)
            if region is not None:
                return ReadInfo(region, self.log_start_offset, end)
            i += 1
        return ReadInfo(None, self.log_start_offset, end)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= ``timestamp``, or None."""
        for segment in self.segments:
            if segment.size == 0 or segment.largest_timestamp < timestamp:
                continue
            segment.ensure_indexes()
            start_offset = max(segment.time_index.lookup(timestamp), self.log_start_offset)
            found = segment.find_batch(start_offset)
            if found is None:
                continue
            for pos, header in segment.batches(found[0]):
                if header.max_timestamp < timestamp:
                    continue
                raw = segment.read_bytes(pos, header.size)
                for record in iter_records(raw):
                    if record.timestamp >= timestamp and record.offset >= self.log_start_offset:
                        return record.offset, record.timestamp
        return None

    def offset_of_max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the record with the largest timestamp (ListOffsets -3)."""
        best: LogSegment | None = None
        for segment in self.segments:
            if segment.size and (best is None or segment.largest_timestamp > best.largest_timestamp):
                best = segment
        if best is None:
            return None
        target = best.largest_timestamp
        for pos, header in best.batches():
            if header.max_timestamp == target:
                for record in iter_records(best.read_bytes(pos, header.size)):
                    if record.timestamp == target:
                        return record.offset, record.timestamp
        return None

    # -- truncation and deletion -----------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Remove everything at or after ``offset`` (a follower diverging from a new leader)."""
        if offset >= self.log_end_offset:
            return
        if offset < self.log_start_offset:
            self.truncate_fully_and_start_at(offset)
            return
        while len(self.segments) > 1 and self._bases[-1] >= offset:
            self.segments.pop().delete_files()
            self._bases.pop()
        self.active.truncate_to(offset)  # also learns its end offset if it was an old segment
        self.active.handle.keep_open = True
        self.recovery_point = min(self.recovery_point, self.log_end_offset)

    def truncate_fully_and_start_at(self, offset: int, *, clock_ms: int | None = None) -> None:
        """Drop every segment and start empty at ``offset``."""
        now = clock_ms if clock_ms is not None else now_ms()
        for segment in self.segments:
            segment.delete_files()
        self.segments.clear()
        self._bases.clear()
        segment = LogSegment.create(self.directory, offset, self.config, self.io, self.cache, now)
        segment.handle.keep_open = True
        self._add(segment)
        self.log_start_offset = self.recovery_point = offset

    def advance_log_start_offset(self, offset: int) -> int:
        """DeleteRecords: move the log start offset forward (never past the end); returns it."""
        offset = min(offset, self.log_end_offset)
        self.log_start_offset = max(self.log_start_offset, offset)
        return self.log_start_offset

    def delete_segments(self, doomed: list[LogSegment], clock_ms: int) -> None:
        """Take ``doomed`` (oldest first, never the active one) out of the log; their files are renamed
        ``.deleted`` and removed after ``file.delete.delay.ms`` (readers may still hold them)."""
        for segment in doomed:
            index = self.segments.index(segment)
            del self.segments[index]
            del self._bases[index]
            segment.rename_suffix(DELETED_SUFFIX)
            self.pending_deletes.append((clock_ms + self.config.file_delete_delay_ms, segment))
        self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)

    def purge_deleted(self, clock_ms: int, *, force: bool = False) -> None:
        keep = []
        for due, segment in self.pending_deletes:
            if force or due <= clock_ms:
                segment.delete_files()
            else:
                keep.append((due, segment))
        self.pending_deletes = keep

    def replace_segments(self, old: list[LogSegment], new: LogSegment) -> bool:
        """Swap cleaned ``new`` (suffix ``.swap``) in for ``old``, if they are still in the log."""
        if not old or any(s not in self.segments for s in old) or self.active in old:
            new.delete_files()
            return False
        first = self.segments.index(old[0])
        for segment in old:
            segment.rename_suffix(DELETED_SUFFIX)
            self.pending_deletes.append((0, segment))
        new.rename_suffix("")
        self.segments[first : first + len(old)] = [new]
        self._bases[first : first + len(old)] = [new.base_offset]
        self.purge_deleted(0)
        return True

    def close(self) -> None:
        self.flush()
        for segment in self.segments:
            segment.close()
        self.purge_deleted(0, force=True)
