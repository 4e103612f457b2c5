"""The file-system seam: every mutating call the log makes goes through ``FileIO``.

Tests subclass it to inject faults (disk full after N bytes, a failing fsync, a failing truncate),
the way redpanda wraps append and truncate in failure probes. Reads use ``os.pread`` directly: a
read fault is modelled by corrupting files, which recovery tests do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

Buffer = bytes | bytearray | memoryview


class FileIO:
    """Plain OS calls. One instance is shared by every log of a manager."""

    def open(self, path: Path, *, create: bool = False) -> int:
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        return os.open(path, flags, 0o644)

    def write_all(self, fd: int, position: int, buffers: Sequence[Buffer]) -> None:
        """Write ``buffers`` back to back at ``position`` (pwritev), looping over short writes."""
        if len(buffers) == 1:  # the common case: one produce buffer, one syscall
            written = os.pwrite(fd, buffers[0], position)
            if written == len(buffers[0]):
                return
            buffers = [memoryview(buffers[0])[written:]]
            position += written
        views = [memoryview(b).cast("B") for b in buffers]
        while views:
            written = os.pwritev(fd, views, position)
            position += written
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]

    def fsync(self, fd: int) -> None:
        os.fdatasync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def rename(self, src: Path, dst: Path) -> None:
        src.rename(dst)

    def unlink(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_file_atomically(self, path: Path, data: bytes) -> None:
        """Write temp, fsync, rename over ``path``, fsync the directory: readers see old or new."""
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            self.write_all(fd, 0, [data])
            os.fsync(fd)
        finally:
            os.close(fd)
        self.rename(tmp, path)
        self.fsync_dir(path.parent)


DEFAULT_IO = FileIO()
