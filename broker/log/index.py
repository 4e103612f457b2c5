"""Sparse offset and time indexes of one segment, in Kafka's on-disk formats.

``.index``: 8-byte entries (int32 offset relative to the segment's base, int32 file position of the
batch whose *last* offset that is). ``.timeindex``: 12-byte entries (int64 max timestamp so far,
int32 relative offset). Entries are kept in memory (loaded lazily for old segments) and written to
the file on ``flush``; recovery rebuilds whatever a crash left behind. A file that is not a
multiple of the entry size or not monotonic is corrupt and gets rebuilt by the segment.
"""

from __future__ import annotations

import bisect
import os
import struct
from array import array
from pathlib import Path

from tidelog.broker.log.io import FileIO

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


class CorruptIndexError(Exception):
    """The index file is damaged; the segment rebuilds it from its log file."""


class _Index:
    entry: struct.Struct

    def __init__(self, path: Path, base_offset: int, max_entries: int, io: FileIO) -> None:
        self.path = path
        self.base_offset = base_offset
        self.max_entries = max_entries
        self.io = io
        self.keys: array[int] = array("q")  # offsets (absolute) or timestamps: sorted ascending
        self.values: array[int] = array("q")  # positions, or absolute offsets
        self._persisted = 0  # entries already in the file
        self._loaded = False

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self.keys)

    @property
    def is_full(self) -> bool:
        if not self._loaded:
            self.load()
        return len(self.keys) >= self.max_entries

    def _decode(self, raw: bytes) -> None:
        raise NotImplementedError  # pragma: no cover - each index type defines its entry

    def _encode(self, start: int) -> bytes:
        raise NotImplementedError  # pragma: no cover

    def load(self) -> None:
        """Read and check the file now; ``CorruptIndexError`` if it is damaged."""
        self.keys = array("q")
        self.values = array("q")
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        if len(raw) % self.entry.size:
            raise CorruptIndexError(f"{self.path}: size {len(raw)} is not a multiple of {self.entry.size}")
        self._decode(raw)
        self._persisted = len(self.keys)
        self._loaded = True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()

    def reset(self) -> None:
        """Forget every entry (before a rebuild) and empty the file."""
        self.keys = array("q")
        self.values = array("q")
        self._persisted = 0
        self._loaded = True
        self.path.write_bytes(b"")

    def truncate_entries(self, count: int) -> None:
        """Keep the first ``count`` entries, in memory and in the file."""
        self._ensure_loaded()
        if count >= len(self.keys):
            return
        del self.keys[count:]
        del self.values[count:]
        if self._persisted > count:
            self._persisted = count
            fd = self.io.open(self.path, create=True)
            try:
                self.io.truncate(fd, count * self.entry.size)
            finally:
                os.close(fd)

    def flush(self) -> None:
        """Append the entries not yet in the file, then fsync it."""
        self._ensure_loaded()
        pending = self._encode(self._persisted)
        fd = self.io.open(self.path, create=True)
        try:
            if pending:
                self.io.write_all(fd, self._persisted * self.entry.size, [pending])
                self._persisted = len(self.keys)
            self.io.fsync(fd)
        finally:
            os.close(fd)


class OffsetIndex(_Index):
    """Maps a batch's last offset to the batch's file position."""

    entry = _OFFSET_ENTRY

    def _decode(self, raw: bytes) -> None:
        last_offset, last_pos = -1, -1
        for rel, pos in _OFFSET_ENTRY.iter_unpack(raw):
            offset = self.base_offset + rel
            if rel < 0 or offset <= last_offset or pos <= last_pos:
                raise CorruptIndexError(f"{self.path}: entries out of order at offset {offset}")
            self.keys.append(offset)
            self.values.append(pos)
            last_offset, last_pos = offset, pos

    def _encode(self, start: int) -> bytes:
        return b"".join(
            _OFFSET_ENTRY.pack(self.keys[i] - self.base_offset, self.values[i]) for i in range(start, len(self.keys))
        )

    def append(self, last_offset: int, position: int) -> None:
        if not self._loaded:
            self.load()
        if self.keys and (last_offset <= self.keys[-1] or position <= self.values[-1]):
            return  # never out of order; a duplicate entry adds nothing
        self.keys.append(last_offset)
        self.values.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(entry offset, position) of the last entry at or below ``offset``; (-1, 0) if none."""
        self._ensure_loaded()
        i = bisect.bisect_right(self.keys, offset) - 1
        if i < 0:
            return -1, 0
        return self.keys[i], self.values[i]

    def position_at_or_before(self, position: int) -> int:
        """The largest indexed batch position at or below ``position`` (0 if none)."""
        self._ensure_loaded()
        i = bisect.bisect_right(self.values, position) - 1
        return self.values[i] if i >= 0 else 0

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries whose key (a batch's last offset) is ``offset`` or more."""
        self._ensure_loaded()
        self.truncate_entries(bisect.bisect_left(self.keys, offset))

    def truncate_to_position(self, position: int) -> None:
        """Drop entries pointing at or beyond ``position``."""
        self._ensure_loaded()
        self.truncate_entries(bisect.bisect_left(self.values, position))


class TimeIndex(_Index):
    """Maps the max timestamp seen so far to the offset holding it; timestamps strictly increase.

    ``last_timestamp`` is the last entry's timestamp (-1 if none or not loaded yet): the segment's
    append compares against it before calling ``maybe_append``, as Kafka skips the time index when
    the max timestamp did not grow."""

    entry = _TIME_ENTRY

    def __init__(self, path: Path, base_offset: int, max_entries: int, io: FileIO) -> None:
        super().__init__(path, base_offset, max_entries, io)
        self.last_timestamp = -1

    def _sync_last(self) -> None:
        self.last_timestamp = self.keys[-1] if self.keys else -1

    def load(self) -> None:
        try:
            super().load()
        finally:
            self._sync_last()

    def reset(self) -> None:
        super().reset()
        self._sync_last()

    def truncate_entries(self, count: int) -> None:
        super().truncate_entries(count)
        self._sync_last()

    def _decode(self, raw: bytes) -> None:
        last_ts = -(2**63)
        for ts, rel in _TIME_ENTRY.iter_unpack(raw):
            if rel < 0 or ts <= last_ts:
                raise CorruptIndexError(f"{self.path}: entries out of order at timestamp {ts}")
            self.keys.append(ts)
            self.values.append(self.base_offset + rel)
            last_ts = ts

    def _encode(self, start: int) -> bytes:
        return b"".join(
            _TIME_ENTRY.pack(self.keys[i], self.values[i] - self.base_offset) for i in range(start, len(self.keys))
        )

    def maybe_append(self, timestamp: int, offset: int) -> None:
        self._ensure_loaded()
        if timestamp >= 0 and (not self.keys or timestamp > self.keys[-1]):
            self.keys.append(timestamp)
            self.values.append(max(offset, self.values[-1] if self.values else offset))
            self.last_timestamp = timestamp

    def last_entry(self) -> tuple[int, int]:
        """(timestamp, offset) of the last entry; (-1, base offset) if empty."""
        self._ensure_loaded()
        if not self.keys:
            return -1, self.base_offset
        return self.keys[-1], self.values[-1]

    def lookup(self, timestamp: int) -> int:
        """Offset to start scanning from for the first record with timestamp >= ``timestamp``."""
        self._ensure_loaded()
        i = bisect.bisect_left(self.keys, timestamp) - 1
        return self.values[i] if i >= 0 else self.base_offset

    def truncate_to_offset(self, offset: int) -> None:
        self._ensure_loaded()
        self.truncate_entries(bisect.bisect_left(self.values, offset))
