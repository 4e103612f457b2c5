"""One segment: ``<20-digit base offset>.log`` with its ``.index`` and ``.timeindex``.

The segment appends whole batches at its end, finds the batch holding an offset through the sparse
index plus a short header walk, hands out batch-aligned ``FileRegion``s for readers, truncates, and
recovers its tail after a crash (rebuilding its indexes from the first unverified byte).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

from tidelog.broker.log import scan
from tidelog.broker.log.config import LogConfig
from tidelog.broker.log.files import FileHandle, FileRegion, HandleCache
from tidelog.broker.log.index import CorruptIndexError, OffsetIndex, TimeIndex
from tidelog.broker.log.io import Buffer, FileIO
from tidelog.broker.protocol import batch as rb
from tidelog.broker.protocol.batch import BatchHeader
from tidelog.broker.protocol.errors import KafkaStorageError

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
DELETED_SUFFIX = ".deleted"
CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"

log = logging.getLogger(__name__)


def file_stem(base_offset: int) -> str:
    return f"{base_offset:020d}"


class BatchInfo(NamedTuple):
    """What the segment needs to know of each appended batch to maintain its indexes."""

    position: int  # relative to the start of the appended buffer
    size: int
    last_offset: int
    max_timestamp: int


class LogSegment:
    """A segment file and its indexes. All methods run on the log's owner (the event loop)."""

    def __init__(
        self, directory: Path, base_offset: int, config: LogConfig, io: FileIO, cache: HandleCache, suffix: str = ""
    ) -> None:
        stem = file_stem(base_offset)
        self.directory = directory
        self.base_offset = base_offset
        self.config = config
        self.io = io
        self.suffix = suffix
        self.handle = FileHandle(directory / f"{stem}{LOG_SUFFIX}{suffix}", cache, io)
        max_entries = config.max_index_entries
        self.offset_index = OffsetIndex(directory / f"{stem}{INDEX_SUFFIX}{suffix}", base_offset, max_entries, io)
        self.time_index = TimeIndex(directory / f"{stem}{TIMEINDEX_SUFFIX}{suffix}", base_offset, max_entries // 2, io)
        self.size = 0
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.bytes_since_index = 0
        self.first_timestamp: int | None = None  # drives segment.ms rolling
        self.created_ms = 0
        self.next_offset: int | None = None  # known for the active segment and after a scan
        self.dirty = False  # bytes written since the last fsync

    # -- life cycle ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        base_offset: int,
        config: LogConfig,
        io: FileIO,
        cache: HandleCache,
        now_ms: int,
        suffix: str = "",
    ) -> LogSegment:
        segment = cls(directory, base_offset, config, io, cache, suffix)
        os.close(io.open(segment.handle.path, create=True))
        for index in (segment.offset_index, segment.time_index):
            index.reset()
        segment.created_ms = now_ms
        segment.next_offset = base_offset
        return segment

    @classmethod
    def open_existing(
        cls, directory: Path, base_offset: int, config: LogConfig, io: FileIO, cache: HandleCache, suffix: str = ""
    ) -> LogSegment:
        segment = cls(directory, base_offset, config, io, cache, suffix)
        stat = segment.handle.path.stat()
        segment.size = stat.st_size
        segment.created_ms = int(stat.st_mtime * 1000)
        return segment

    @property
    def last_modified_ms(self) -> int:
        return int(self.handle.path.stat().st_mtime * 1000)

    @property
    def largest_timestamp(self) -> int:
        """Max record timestamp in the segment (file mtime if it has none), as retention uses it."""
        if self.max_timestamp < 0:
            self.ensure_indexes()
            ts, offset = self.time_index.last_entry()
            if ts >= 0:
                self.max_timestamp, self.offset_of_max_timestamp = ts, offset
        return self.max_timestamp if self.max_timestamp >= 0 else self.last_modified_ms

    def close(self) -> None:
        self.handle.retire()

    def rename_suffix(self, suffix: str) -> None:
        """Rename all three files to carry ``suffix`` ('' for live, '.deleted', '.swap' ...)."""
        for attr in ("handle", "offset_index", "time_index"):
            holder = getattr(self, attr)
            old: Path = holder.path
            stem = old.name.removesuffix(self.suffix) if self.suffix else old.name
            new = old.with_name(stem + suffix)
            if old.exists():
                self.io.rename(old, new)
            holder.path = new
        self.suffix = suffix

    def delete_files(self) -> None:
        self.handle.retire()
        for path in (self.handle.path, self.offset_index.path, self.time_index.path):
            self.io.unlink(path)

    # -- append ----------------------------------------------------------------------------------

    def should_roll(self, incoming: int, max_timestamp: int, last_offset: int, now_ms: int) -> bool:
        config = self.config
        if self.size == 0:
            return False
        if self.size + incoming > config.segment_bytes:
            return True
        if self.offset_index.is_full or self.time_index.is_full:
            return True
        if last_offset - self.base_offset > 2**31 - 1:
            return True  # relative offsets must fit the index's int32
        # Kafka's rule: the incoming batch's timestamp against the segment's first batch timestamp,
        # or the wall clock against the segment's creation when there is no timestamp.
        if self.first_timestamp is not None and self.first_timestamp >= 0:
            waited = max_timestamp - self.first_timestamp
        else:
            waited = now_ms - self.created_ms
        return waited > config.segment_ms - config.segment_jitter_ms

    def append(self, buffer: Buffer, batches: list[BatchInfo]) -> None:
        """Write ``buffer`` (whole batches) at the end; on an I/O error keep the file at its old size."""
        start = self.size
        fd = self.handle.pin()
        try:
            self.io.write_all(fd, start, (buffer,))
        except OSError as exc:
            self._undo_partial_write(fd, start)
            raise KafkaStorageError(f"append to {self.handle.path} failed: {exc}") from exc
        finally:
            self.handle.unpin()
        interval = self.config.index_interval_bytes
        if self.first_timestamp is None:
            self.first_timestamp = batches[0].max_timestamp
        for position, size, last_offset, max_timestamp in batches:
            if max_timestamp > self.max_timestamp:
                self.max_timestamp = max_timestamp
                self.offset_of_max_timestamp = last_offset
            if self.bytes_since_index > interval:
                self.offset_index.append(last_offset, start + position)
                self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
                self.bytes_since_index = 0
            self.bytes_since_index += size
        self.size = start + len(buffer)
        self.next_offset = batches[-1].last_offset + 1
        self.dirty = True

    def _undo_partial_write(self, fd: int, size: int) -> None:
        try:
            self.io.truncate(fd, size)
        except OSError as exc:
            # The bytes past ``size`` are never read (reads stop at self.size) and recovery would
            # drop a torn tail; report the log as failed rather than guess.
            raise KafkaStorageError(f"cannot undo a failed append to {self.handle.path}: {exc}") from exc

    def on_roll(self) -> None:
        """The segment becomes inactive: make its last time-index entry its maximum timestamp."""
        if self.max_timestamp >= 0:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)

    def flush(self) -> None:
        """fdatasync the log file, then persist index entries (they only describe synced bytes)."""
        fd = self.handle.pin()
        try:
            self.io.fsync(fd)
        finally:
            self.handle.unpin()
        self.offset_index.flush()
        self.time_index.flush()
        self.dirty = False

    # -- lookups ---------------------------------------------------------------------------------

    def ensure_indexes(self) -> None:
        """Load both indexes; a damaged one is rebuilt from the log file (a full verified scan)."""
        if self.offset_index._loaded and self.time_index._loaded:
            return
        try:
            self.offset_index.load()
            self.time_index.load()
        except CorruptIndexError as exc:
            log.warning("%s: %s; rebuilding the indexes", self.handle.path.name, exc)
            self.recover()

    def find_batch(self, offset: int) -> tuple[int, BatchHeader] | None:
        """(position, header) of the first batch whose last offset is >= ``offset``, or None."""
        self.ensure_indexes()
        _, position = self.offset_index.lookup(offset)
        fd = self.handle.pin()
        try:
            for pos, header in scan.headers(fd, position, self.size):
                if header.last_offset >= offset:
                    return pos, header
        except scan.TornBatchError as exc:
            raise KafkaStorageError(f"{self.handle.path}: {exc}") from exc
        finally:
            self.handle.unpin()
        return None

    def batch_end_at_or_before(self, limit: int, start: int) -> int:
        """The largest batch boundary in (start, limit], walking from the index's nearest entry."""
        self.ensure_indexes()
        position = max(self.offset_index.position_at_or_before(limit), start)
        end = position
        fd = self.handle.pin()
        try:
            for pos, header in scan.headers(fd, position, min(self.size, limit)):
                end = pos + header.size
        except scan.TornBatchError:
            pass  # the walk reached ``limit`` mid-batch: ``end`` is the last boundary before it
        finally:
            self.handle.unpin()
        return end

    def read(self, offset: int, max_bytes: int, max_position: int, *, min_one: bool) -> FileRegion | None:
        """Whole batches from the one holding ``offset``, at most ``max_bytes`` (at least one batch
        if ``min_one``), never past ``max_position``. None if no batch qualifies."""
        found = self.find_batch(offset)
        if found is None:
            return None
        start, header = found
        if start >= max_position:
            return None
        limit = min(max_position, start + max_bytes)
        end = self.batch_end_at_or_before(limit, start) if limit < self.size else limit
        if end <= start:
            if not min_one or start + header.size > max_position:
                return None
            end = start + header.size
        return FileRegion.pinned(self.handle, start, end - start, header.base_offset, self._offset_at(end))

    def _offset_at(self, position: int) -> int:
        """The base offset of the batch starting at ``position`` (the segment's end offset at its end)."""
        if position >= self.size:
            return self.compute_next_offset()
        fd = self.handle.pin()
        try:
            return int(rb.read_header(os.pread(fd, rb.HEADER_SIZE, position)).base_offset)
        finally:
            self.handle.unpin()

    def batches(self, start: int = 0) -> list[tuple[int, BatchHeader]]:
        """All (position, header) pairs from ``start`` (cleaner, timestamp lookups)."""
        fd = self.handle.pin()
        try:
            return list(scan.headers(fd, start, self.size))
        except scan.TornBatchError as exc:
            raise KafkaStorageError(f"{self.handle.path}: {exc}") from exc
        finally:
            self.handle.unpin()

    def read_bytes(self, position: int, length: int) -> bytes:
        fd = self.handle.pin()
        try:
            return os.pread(fd, length, position)
        finally:
            self.handle.unpin()

    # -- truncation and recovery -----------------------------------------------------------------

    def compute_next_offset(self) -> int:
        """The offset after the last batch (a walk from the last index entry), cached."""
        if self.next_offset is None:
            self.ensure_indexes()
            batches = self.batches(self.offset_index.position_at_or_before(self.size))
            self.next_offset = batches[-1][1].next_offset if batches else self.base_offset
        return self.next_offset

    def truncate_to(self, offset: int) -> int:
        """Drop every batch whose last offset is >= ``offset``; returns the bytes removed."""
        found = self.find_batch(offset)
        if found is None:
            self.compute_next_offset()
            return 0
        position, header = found
        removed = self.size - position
        fd = self.handle.pin()
        try:
            self.io.truncate(fd, position)
        finally:
            self.handle.unpin()
        self.size = position
        self.offset_index.truncate_to_position(position)
        self.time_index.truncate_to_offset(header.base_offset)
        self.next_offset = header.base_offset if position > 0 else self.base_offset
        self._rescan_tail_stats(self.offset_index.position_at_or_before(position))
        return removed

    def _rescan_tail_stats(self, from_position: int) -> None:
        """Recompute max timestamp and index spacing from the time index and a short header walk."""
        self.max_timestamp, self.offset_of_max_timestamp = self.time_index.last_entry()
        self.bytes_since_index = 0
        for pos, header in self.batches(from_position):
            if header.max_timestamp > self.max_timestamp:
                self.max_timestamp, self.offset_of_max_timestamp = header.max_timestamp, header.last_offset
            self.bytes_since_index = pos + header.size - from_position
        self.first_timestamp = None
        if self.size > 0:
            first = self._first_header()
            if first:
                self.first_timestamp = first[0][1].max_timestamp

    def _first_header(self) -> list[tuple[int, BatchHeader]]:
        fd = self.handle.pin()
        try:
            return [next(scan.headers(fd, 0, self.size))]
        except (StopIteration, scan.TornBatchError):
            return []
        finally:
            self.handle.unpin()

    def recover(self, from_offset: int | None = None) -> int:
        """Verify batches from ``from_offset`` (the whole file if None or at the base offset) to the end
        of the file, rebuilding index entries and truncating a torn or corrupt tail; the bytes before
        ``from_offset`` are trusted (they were flushed). Returns the number of bytes truncated."""
        start, next_offset = 0, None
        if from_offset is not None and from_offset > self.base_offset:
            try:
                self.offset_index.truncate_to_offset(from_offset)
                self.time_index.truncate_to_offset(from_offset)
                start, next_offset = self._trusted_prefix(from_offset)
            except CorruptIndexError:
                start, next_offset = 0, None
        if start == 0:
            self.offset_index.reset()
            self.time_index.reset()
            self.max_timestamp, self.offset_of_max_timestamp = -1, self.base_offset
            self.bytes_since_index = 0
            self.first_timestamp = None
        else:
            self.size = start
            self._rescan_tail_stats(self.offset_index.position_at_or_before(start))
        max_batch = self.config.max_message_bytes + (1 << 20)
        fd = self.handle.pin()
        try:
            file_size = os.fstat(fd).st_size
            valid_end = start
            try:
                for pos, header in scan.verified(fd, start, file_size, max_batch):
                    if next_offset is not None and header.base_offset < next_offset:
                        raise scan.TornBatchError(pos, f"offset {header.base_offset} goes backwards")
                    if header.max_timestamp > self.max_timestamp:
                        self.max_timestamp, self.offset_of_max_timestamp = header.max_timestamp, header.last_offset
                    if self.bytes_since_index > self.config.index_interval_bytes:
                        self.offset_index.append(header.last_offset, pos)
                        self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
                        self.bytes_since_index = 0
                    self.bytes_since_index += header.size
                    if self.first_timestamp is None:
                        self.first_timestamp = header.max_timestamp
                    next_offset = header.next_offset
                    valid_end = pos + header.size
            except scan.TornBatchError:
                pass  # everything from ``valid_end`` on is a torn or corrupt tail
            truncated = file_size - valid_end
            if truncated:
                self.io.truncate(fd, valid_end)
        finally:
            self.handle.unpin()
        self.size = valid_end
        self.next_offset = next_offset if next_offset is not None else self.base_offset
        self.offset_index.flush()
        self.time_index.flush()
        return truncated

    def _trusted_prefix(self, offset: int) -> tuple[int, int | None]:
        """(position of the first batch with last offset >= ``offset``, next offset before it),
        walking headers from the index entry below ``offset``."""
        _, position = self.offset_index.lookup(offset - 1)
        next_offset: int | None = None
        fd = self.handle.pin()
        try:
            file_size = os.fstat(fd).st_size
            for pos, header in scan.headers(fd, position, file_size):
                if header.last_offset >= offset:
                    return pos, next_offset
                next_offset = header.next_offset
                position = pos + header.size
        except scan.TornBatchError:
            pass
        finally:
            self.handle.unpin()
        return position, next_offset
