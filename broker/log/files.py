"""A budget of open file descriptors shared by all segments, and pinned handles for readers.

Segments open their ``.log`` file on demand; the least recently used unpinned descriptors are closed
when the budget is exceeded. A reader (a Fetch being sent with ``sendfile``) pins a handle so its
descriptor can be neither closed nor reused under it; a deleted segment's file stays readable
while pinned (the directory entry is gone, the inode is not).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from tidelog.broker.log.io import FileIO


class HandleCache:
    """LRU of open handles, closing unpinned ones beyond ``max_open``."""

    def __init__(self, max_open: int = 1024) -> None:
        self.max_open = max_open
        self._open: OrderedDict[int, FileHandle] = OrderedDict()

    @property
    def open_count(self) -> int:
        return len(self._open)

    def opened(self, handle: FileHandle) -> None:
        self._open[id(handle)] = handle
        self._evict()

    def touched(self, handle: FileHandle) -> None:
        self._open.move_to_end(id(handle))

    def closed(self, handle: FileHandle) -> None:
        self._open.pop(id(handle), None)

    def _evict(self) -> None:
        if len(self._open) <= self.max_open:
            return
        for handle in list(self._open.values()):
            if len(self._open) <= self.max_open:
                break
            if handle.pins == 0 and not handle.keep_open:
                handle.close()


class FileHandle:
    """One file, opened lazily through the cache. ``pin``/``unpin`` bracket every use of the fd
    that outlives the current call (a region handed to a sender). ``fd`` is the descriptor, -1 while
    closed: a synchronous use (one syscall, no await) may read it directly, since only opening
    another handle can close this one."""

    __slots__ = ("cache", "fd", "io", "keep_open", "path", "pins", "retired")

    def __init__(self, path: Path, cache: HandleCache, io: FileIO) -> None:
        self.path = path
        self.cache = cache
        self.io = io
        self.pins = 0
        self.keep_open = False  # the active segment keeps its descriptor
        self.retired = False  # the segment is gone: close as soon as no reader pins it
        self.fd = -1

    def pin(self) -> int:
        if self.keep_open and self.fd >= 0:  # the active segment: no LRU bookkeeping
            self.pins += 1
            return self.fd
        if self.fd < 0:
            if self.retired:
                raise FileNotFoundError(f"{self.path} was deleted")
            self.fd = self.io.open(self.path)
            self.pins += 1  # pinned before the cache evicts: never this handle
            self.cache.opened(self)
            return self.fd
        self.cache.touched(self)
        self.pins += 1
        return self.fd

    def unpin(self) -> None:
        self.pins -= 1
        if self.pins == 0 and self.retired:
            self.close()

    def retire(self) -> None:
        """The file was deleted or replaced: close now, or when the last reader unpins."""
        self.retired = True
        self.keep_open = False
        if self.pins == 0:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            self.cache.closed(self)


@dataclass(slots=True)
class FileRegion:
    """A byte range of a segment file, pinned open until ``release``: what the server ``sendfile``s.

    ``fd`` is valid between creation and ``release()``; always release, even on error paths.
    """

    handle: FileHandle
    fd: int
    position: int
    length: int
    first_offset: int
    next_offset: int = -1  # the offset after the region's last batch
    released: bool = False

    @classmethod
    def pinned(
        cls, handle: FileHandle, position: int, length: int, first_offset: int, next_offset: int = -1
    ) -> FileRegion:
        return cls(handle, handle.pin(), position, length, first_offset, next_offset)

    def read(self) -> bytes:
        """Copy the region's bytes (tests, the CLI, and the copying send path)."""
        data = os.pread(self.fd, self.length, self.position)
        if len(data) != self.length:
            raise OSError(f"short read of {self.handle.path}: {len(data)} of {self.length} bytes")
        return data

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.handle.unpin()
