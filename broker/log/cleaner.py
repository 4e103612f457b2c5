"""Compaction for ``cleanup.policy=compact``: keep the latest record per key, drop tombstones after
``delete.retention.ms``.

Split in three so the event loop never blocks on it: ``plan`` (loop: pick the cleanable segments,
below the active segment and ``min.compaction.lag.ms``, when the dirty ratio calls for it),
``CleanJob.run`` (a worker thread: build the key → latest-offset map over the dirty part, rewrite
each group of segments into ``.cleaned`` files with their indexes, rename them ``.swap``), and
``CleanJob.install`` (loop: swap them in if the log still holds the originals). Batches whose
records all survive are copied byte for byte; others are re-encoded with their original base offset,
``lastOffsetDelta``, producer fields and codec. A crash at any point loses nothing: ``.cleaned``
files are dropped and a ``.swap`` is completed when the log is opened.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from tidelog.broker.log import scan
from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.index import OffsetIndex, TimeIndex
from tidelog.broker.log.log import PartitionLog
from tidelog.broker.log.segment import (
    CLEANED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    TIMEINDEX_SUFFIX,
    LogSegment,
    file_stem,
)
from tidelog.broker.protocol.batch import NO_PRODUCER_ID, BatchHeader
from tidelog.broker.protocol.records import Record, build_batch, iter_records

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Group:
    """Consecutive old segments rewritten into one cleaned segment."""

    segments: list[LogSegment]
    paths: list[Path]
    last_modified_ms: int
    # filled by the worker:
    size: int = 0
    next_offset: int = 0
    max_timestamp: int = -1
    offset_of_max_timestamp: int = 0


@dataclass(slots=True)
class CleanJob:
    """One compaction pass over one log. ``run`` in a thread, ``install`` on the loop."""

    log: PartitionLog
    groups: list[Group]
    dirty_paths: list[Path]
    end_offset: int  # first offset not cleaned (the active segment's base or the lag bound)
    now_ms: int
    records_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    failed: str | None = None
    offset_map: dict[bytes, int] = field(default_factory=dict)

    def run(self) -> None:
        """Build the offset map, then write every cleaned group. Touches only its own files."""
        try:
            self.offset_map = self._build_offset_map()
            for group in self.groups:
                self._clean_group(group)
        except OSError as exc:  # a segment vanished under us (retention, truncation): try next time
            self.failed = str(exc)
            self._discard()

    def _read_batches(self, path: Path) -> list[tuple[BatchHeader, bytes]]:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            out = []
            try:
                for pos, header in scan.headers(fd, 0, size):
                    out.append((header, os.pread(fd, header.size, pos)))
            except scan.TornBatchError as exc:
                raise OSError(f"{path}: {exc}") from exc
            return out
        finally:
            os.close(fd)

    def _build_offset_map(self) -> dict[bytes, int]:
        latest: dict[bytes, int] = {}
        for path in self.dirty_paths:
            for header, raw in self._read_batches(path):
                if header.is_control:
                    continue
                for record in iter_records(raw):
                    if record.key is not None and record.offset < self.end_offset:
                        latest[record.key] = record.offset
        return latest

    def _retain(self, record: Record, tombstone_horizon_passed: bool) -> bool:
        if record.key is None:
            return False
        latest = self.offset_map.get(record.key)
        if latest is not None and record.offset < latest:
            return False
        return not (record.value is None and tombstone_horizon_passed)

    def _clean_group(self, group: Group) -> None:
        log_config = self.log.config
        base = group.segments[0].base_offset
        directory = self.log.directory
        stem = file_stem(base)
        io = self.log.io
        out_path = directory / f"{stem}{LOG_SUFFIX}{CLEANED_SUFFIX}"
        max_entries = log_config.max_index_entries
        offset_index = OffsetIndex(directory / f"{stem}{INDEX_SUFFIX}{CLEANED_SUFFIX}", base, max_entries, io)
        time_index = TimeIndex(directory / f"{stem}{TIMEINDEX_SUFFIX}{CLEANED_SUFFIX}", base, max_entries // 2, io)
        offset_index.reset()
        time_index.reset()
        fd = io.open(out_path, create=True)
        try:
            io.truncate(fd, 0)
            position = since_index = 0
            group.next_offset = base
            for path in group.paths:
                horizon_passed = path.stat().st_mtime * 1000 < self.now_ms - log_config.delete_retention_ms
                for header, raw in self._read_batches(path):
                    self.bytes_before += len(raw)
                    data = self._filter_batch(header, raw, horizon_passed)
                    group.next_offset = header.next_offset
                    if data is None:
                        continue
                    if header.max_timestamp > group.max_timestamp:
                        group.max_timestamp, group.offset_of_max_timestamp = header.max_timestamp, header.last_offset
                    if since_index > log_config.index_interval_bytes:
                        offset_index.append(header.last_offset, position)
                        time_index.maybe_append(group.max_timestamp, group.offset_of_max_timestamp)
                        since_index = 0
                    io.write_all(fd, position, [data])
                    position += len(data)
                    since_index += len(data)
            if group.max_timestamp >= 0:
                time_index.maybe_append(group.max_timestamp, group.offset_of_max_timestamp)
            io.fsync(fd)
        finally:
            os.close(fd)
        offset_index.flush()
        time_index.flush()
        mtime = group.last_modified_ms / 1000
        os.utime(out_path, (mtime, mtime))
        group.size = position
        self.bytes_after += position
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
            io.rename(directory / f"{stem}{suffix}{CLEANED_SUFFIX}", directory / f"{stem}{suffix}{SWAP_SUFFIX}")
        io.fsync_dir(directory)

    def _filter_batch(self, header: BatchHeader, raw: bytes, horizon_passed: bool) -> bytes | None:
        if header.is_control:
            return raw
        records = list(iter_records(raw))
        kept = [r for r in records if self._retain(r, horizon_passed)]
        self.records_removed += len(records) - len(kept)
        if len(kept) == len(records):
            return raw
        if not kept and header.producer_id == NO_PRODUCER_ID:
            return None
        # An idempotent producer's emptied batch stays (as Kafka keeps it) so its sequence survives.
        return build_batch(
            kept,
            base_offset=header.base_offset,
            last_offset_delta=header.last_offset_delta,
            compression=header.compression,
            attributes=header.attributes,
            producer_id=header.producer_id,
            producer_epoch=header.producer_epoch,
            base_sequence=header.base_sequence,
            partition_leader_epoch=header.partition_leader_epoch,
            base_timestamp=header.base_timestamp,
            max_timestamp=header.max_timestamp if header.is_log_append_time else None,
        )

    def _discard(self) -> None:
        for group in self.groups:
            stem = file_stem(group.segments[0].base_offset)
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                for tail in (CLEANED_SUFFIX, SWAP_SUFFIX):
                    self.log.io.unlink(self.log.directory / f"{stem}{suffix}{tail}")

    def install(self) -> bool:
        """On the loop: replace each group by its cleaned segment. False if nothing was installed."""
        if self.failed is not None:
            log.info("%s: compaction skipped: %s", self.log.directory.name, self.failed)
            return False
        installed = False
        for group in self.groups:
            base = group.segments[0].base_offset
            new = LogSegment.open_existing(
                self.log.directory, base, self.log.config, self.log.io, self.log.cache, SWAP_SUFFIX
            )
            new.next_offset = group.next_offset
            new.max_timestamp, new.offset_of_max_timestamp = group.max_timestamp, group.offset_of_max_timestamp
            installed |= self.log.replace_segments(group.segments, new)
        return installed


def plan(log: PartitionLog, first_dirty_offset: int, now_ms: int) -> CleanJob | None:
    """A compaction job for ``log`` if its dirty ratio (or ``max.compaction.lag.ms``) calls for one."""
    config: LogConfig = log.config
    if not config.compact:
        return None
    cleanable: list[LogSegment] = []
    for segment in log.segments[:-1]:
        if now_ms - segment.largest_timestamp < config.min_compaction_lag_ms:
            break
        cleanable.append(segment)
    if not cleanable:
        return None
    end_offset = log.segments[len(cleanable)].base_offset
    first_dirty = max(first_dirty_offset, log.log_start_offset)
    # a segment is dirty when any of its offsets is at or past the first dirty offset
    dirty = [s for i, s in enumerate(cleanable) if log.segments[i + 1].base_offset > first_dirty]
    dirty_bytes = sum(s.size for s in dirty)
    total = sum(s.size for s in cleanable) or 1
    overdue = any(now_ms - s.largest_timestamp >= config.max_compaction_lag_ms for s in dirty)
    if not dirty or (dirty_bytes / total < config.min_cleanable_dirty_ratio and not overdue):
        return None
    groups: list[Group] = []
    current: list[LogSegment] = []
    for segment in cleanable:
        size = sum(s.size for s in current) + segment.size
        if current and (size > config.segment_bytes or segment.base_offset - current[0].base_offset > 2**31 - 1):
            groups.append(_group(current))
            current = []
        current.append(segment)
    if current:
        groups.append(_group(current))
    return CleanJob(log, groups, [s.handle.path for s in dirty], end_offset, now_ms)


def _group(segments: list[LogSegment]) -> Group:
    return Group(list(segments), [s.handle.path for s in segments], max(s.last_modified_ms for s in segments))


def clean_now(log: PartitionLog, first_dirty_offset: int, now_ms: int) -> CleanJob | None:
    """Plan, run and install in the caller's thread (tests, tools). Returns the job that ran."""
    job = plan(log, first_dirty_offset, now_ms)
    if job is None:
        return None
    job.run()
    job.install()
    return job
