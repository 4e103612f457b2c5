"""The file-system seam: every mutating call the log makes goes through ``FileIO``.

Tests subclass it to inject faults (disk full after N bytes, a failing fsync, a failing truncate),
the way redpanda wraps append and truncate in failure probes. Reads use ``os.pread`` directly: a
read fault is modelled by corrupting files, which recovery tests do.

``preallocate`` reserves disk blocks ahead of the active segment's end with Linux's
``fallocate(FALLOC_FL_KEEP_SIZE)``, called through ``ctypes`` (Python's ``os.posix_fallocate``
would grow the file, and the file size is where a segment ends). On ext4 a buffered write into
reserved blocks skips the per-page delayed-allocation bookkeeping: a 16 KiB append into the page
cache took 8.1 instead of 9.4 us on the CI machine. Where the call is missing or refused the log
just writes without it.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Buffer = bytes | bytearray | memoryview

_FALLOC_FL_KEEP_SIZE = 1  # <linux/falloc.h>: reserve blocks, leave the file size alone


def _libc_fallocate() -> Callable[[int, int, int, int], int] | None:
    """The C library's ``fallocate64(fd, mode, offset, len)`` (or ``fallocate`` where ``off_t`` is
    64 bits anyway, as on musl), or None off Linux / without either."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    names = ("fallocate64", "fallocate") if ctypes.sizeof(ctypes.c_long) == 8 else ("fallocate64",)
    name = next((name for name in names if hasattr(libc, name)), None)
    if name is None:
        return None
    function: ctypes._NamedFuncPointer = getattr(libc, name)
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return function


_fallocate = _libc_fallocate()


class FileIO:
    """Plain OS calls. One instance is shared by every log of a manager."""

    preallocate_bytes = 1 << 20
    """How far ahead of its end the active segment reserves blocks at first (0: never); the stretch
    grows to 16 times this as the segment fills (``LogSegment._reserve``). Reserved disk beyond the
    data is given back when the segment rolls or the log closes."""

    def open(self, path: Path, *, create: bool = False) -> int:
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        return os.open(path, flags, 0o644)

    pwrite = staticmethod(os.pwrite)
    """``pwrite(fd, data, position) -> bytes written``, the append hot path's one syscall, called
    without a Python frame; the caller finishes a short write with ``write_all``. Fault-injecting
    subclasses override it (and ``write_all``)."""

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

    def preallocate(self, fd: int, position: int, length: int) -> bool:
        """Reserve blocks for ``length`` bytes from ``position`` without changing the file size;
        False if this platform or filesystem cannot (nothing changed then)."""
        return _fallocate is not None and _fallocate(fd, _FALLOC_FL_KEEP_SIZE, position, length) == 0

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
