"""One segment: ``<20-digit base offset>.log`` with its ``.index`` and ``.timeindex``.

The segment appends whole batches at its end (one ``pwrite`` into the page cache per append, disk
blocks reserved ahead of it and given back when it stops growing, index entries kept in memory until
``flush``), finds the batch holding an offset through the sparse index plus a short header walk,
hands out batch-aligned ``FileRegion``s for readers, truncates, and recovers its tail after a crash
(rebuilding its indexes from the first unverified byte).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

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

_MAX_RELATIVE_OFFSET = 2**31 - 1  # index entries store offsets relative to the base as int32
_NO_RESERVE = 1 << 63  # preallocation failed or is off: never try again for this segment


def file_stem(base_offset: int) -> str:
    return f"{base_offset:020d}"


BatchInfo = tuple[int, int, int, int]
"""What the segment needs of each appended batch to keep its indexes: (position relative to the
appended buffer, size, last offset, max timestamp). A plain tuple, built per batch on the hot path."""


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
        self.max_last_offset = base_offset + _MAX_RELATIVE_OFFSET  # index offsets are relative int32s
        self.reserved = 0  # blocks reserved up to here (FileIO.preallocate); _NO_RESERVE: none wanted

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
        self.release_reserved()
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
        """Whether batches of ``incoming`` bytes must go to a new segment: this one would exceed
        ``segment.bytes``, an index is full, the relative offset would overflow, or it is too old
        (Kafka's rule: the incoming max timestamp against the segment's first batch timestamp, or
        the wall clock against the segment's creation when there is none). An empty segment takes
        anything. ``append`` runs the same test inline."""
        size = self.size
        if size == 0:
            return False
        config = self.config
        first = self.first_timestamp
        waited = max_timestamp - first if first is not None and first >= 0 else now_ms - self.created_ms
        return (
            size + incoming > config.segment_bytes
            or len(self.offset_index.keys) >= self.offset_index.max_entries
            or len(self.time_index.keys) >= self.time_index.max_entries
            or last_offset - self.base_offset > _MAX_RELATIVE_OFFSET
            or waited > config.segment_ms - config.segment_jitter_ms
        )

    def append(self, buffer: Buffer, batches: list[BatchInfo], now_ms: int) -> bool:
        """Write ``buffer`` (whole batches) at the end, or return False if it belongs in a new segment
        (``should_roll``). On an I/O error the file keeps its old size and ``KafkaStorageError`` is
        raised.

        The bytes are in the file (the page cache) when this returns True; index entries go to
        memory and reach their files at ``flush`` (recovery rebuilds them past the recovery point).
        This is the hot path of every produce, measured opcode by opcode: the roll test is inlined,
        attribute loads are kept in locals, the write is one C call, and nothing is called per batch
        unless an index entry is due."""
        start = self.size
        end = start + len(buffer)
        if start:  # should_roll, inline
            settings = self.config.append_settings  # [0] segment.bytes, [6] segment.ms - jitter
            first = self.first_timestamp
            if first is not None and first >= 0:
                waited = (batches[0][3] if len(batches) == 1 else max(b[3] for b in batches)) - first
            else:
                waited = now_ms - self.created_ms
            if (
                end > settings[0]
                or waited > settings[6]
                or batches[-1][2] > self.max_last_offset
                or len(self.offset_index.keys) >= self.offset_index.max_entries
                or len(self.time_index.keys) >= self.time_index.max_entries
            ):
                return False
        fd = self.handle.fd  # a synchronous write needs no pin (see FileHandle)
        if fd < 0:
            fd = self.handle.pin()
            self.handle.unpin()
        if end > self.reserved:
            self._reserve(fd, start, end)
        try:
            written = self.io.pwrite(fd, buffer, start)
            if written != end - start:
                self.io.write_all(fd, start + written, (memoryview(buffer)[written:],))
        except OSError as exc:
            self._undo_partial_write(fd, start)
            raise KafkaStorageError(f"append to {self.handle.path} failed: {exc}") from exc
        self.size = end
        self.dirty = True
        if self.first_timestamp is None:
            self.first_timestamp = batches[0][3]
        since = self.bytes_since_index
        interval = self.config.index_interval_bytes
        for position, size, last_offset, max_ts in batches:
            if max_ts > self.max_timestamp:
                self.max_timestamp = max_ts
                self.offset_of_max_timestamp = last_offset
            if since > interval:
                index = self.offset_index
                if index._loaded:  # always for the active segment: offsets and positions only grow here
                    index.keys.append(last_offset)
                    index.values.append(start + position)
                else:
                    index.append(last_offset, start + position)
                if self.max_timestamp > self.time_index.last_timestamp:  # Kafka: only a larger one
                    self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
                since = 0
            since += size
        self.bytes_since_index = since
        self.next_offset = batches[-1][2] + 1
        return True

    def _reserve(self, fd: int, start: int, end: int) -> None:
        """Reserve disk blocks from ``start`` to some way past ``end`` (within ``segment.bytes``), or
        stop trying for this segment if the file system will not. The stretch grows with the
        segment, ``preallocate_bytes`` at first up to 16 times that (a sixteenth of what the segment
        holds): busy partitions make fewer calls, quiet ones hold little disk in reserve."""
        ahead = self.io.preallocate_bytes
        ahead = min(max(ahead, start >> 4), ahead << 4)
        target = max(end, min(end + ahead, self.config.segment_bytes))
        if ahead > 0 and self.io.preallocate(fd, start, target - start):
            self.reserved = target
        else:
            self.reserved = _NO_RESERVE

    def release_reserved(self) -> None:
        """Give back the blocks reserved past the data (the segment stops growing): a truncate to
        the current size drops them; failing that they go with the file."""
        if self.size < self.reserved < _NO_RESERVE and not self.handle.retired:
            fd = self.handle.pin()
            try:
                self.io.truncate(fd, self.size)
            except OSError as exc:
                log.warning("%s: cannot release preallocated blocks: %s", self.handle.path.name, exc)
            finally:
                self.handle.unpin()
        self.reserved = 0

    def _undo_partial_write(self, fd: int, size: int) -> None:
        self.reserved = 0  # a truncate drops the reservation too
        try:
            self.io.truncate(fd, size)
        except OSError as exc:
            # The bytes past ``size`` are never read (reads stop at self.size) and recovery would
            # drop a torn tail; report the log as failed rather than guess.
            raise KafkaStorageError(f"cannot undo a failed append to {self.handle.path}: {exc}") from exc

    def on_roll(self) -> None:
        """The segment becomes inactive: give back reserved blocks, and make its last time-index
        entry its maximum timestamp."""
        self.release_reserved()
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
            self.reserved = 0
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
                self.reserved = 0
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
