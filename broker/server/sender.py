"""Writing responses whose parts are bytes and file regions, zero-copy.

uvloop has no ``loop.sendfile`` and will not let a second reader or writer watch a transport's own
descriptor. So the sender works on a duplicate of the socket's descriptor: while the transport has
nothing buffered, bytes go straight to the socket and regions leave the page cache with
``os.sendfile``; when the socket is full, the rest waits in a backlog and continues from a
writability callback on the duplicate. Nothing is written through the transport while a backlog
exists, so order holds. With zero copy off (or no socket), regions are copied with ``pread`` and
written through the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable

from tidelog.broker.log.files import FileRegion

Part = bytes | memoryview | FileRegion


class _Partial:
    """A region partly sent."""

    __slots__ = ("region", "sent")

    def __init__(self, region: FileRegion, sent: int) -> None:
        self.region = region
        self.sent = sent


class Sender:
    def __init__(
        self,
        transport: asyncio.Transport,
        zero_copy: bool,
        on_drained: Callable[[], None],
        observe: Callable[[int, int], None] = lambda _sendfile, _copied: None,
    ) -> None:
        self.transport = transport
        self.on_drained = on_drained
        self.observe = observe
        self.fd = -1
        if zero_copy:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                self.fd = os.dup(sock.fileno())
        self.backlog: deque[bytes | memoryview | _Partial] = deque()
        self.backlog_bytes = 0
        self.bytes_sendfile = 0
        self.bytes_copied = 0
        self._watching = False

    @property
    def waiting(self) -> bool:
        """Parts are queued behind a full socket."""
        return bool(self.backlog)

    def send(self, parts: Iterable[Part]) -> None:
        """Write ``parts`` in order; regions are released once their bytes are sent or copied."""
        if self.fd < 0:
            self.transport.writelines([self._copy(p) if isinstance(p, FileRegion) else p for p in parts])
            return
        if self.backlog or self.transport.get_write_buffer_size():
            # Behind a full socket, or behind bytes the transport still holds: queue, keep order.
            self._queue(parts)
            self._watch()
            return
        self._queue(parts)
        self._pump()

    def _queue(self, parts: Iterable[Part]) -> None:
        for part in parts:
            if isinstance(part, FileRegion):
                self.backlog.append(_Partial(part, 0))
                self.backlog_bytes += part.length
            else:
                self.backlog.append(part)
                self.backlog_bytes += len(part)

    def _pump(self) -> None:
        """Send from the backlog until it is empty or the socket is full."""
        if self.transport.get_write_buffer_size():
            self._watch()
            return
        while self.backlog:
            item = self.backlog[0]
            if isinstance(item, _Partial):
                done = self._sendfile(item)
            else:
                n = self._write(item)
                self.backlog_bytes -= n
                done = n == len(item)
                if not done:
                    self.backlog[0] = memoryview(item)[n:]
            if not done:
                self._watch()
                return
            self.backlog.popleft()
        self._unwatch()
        self.on_drained()

    def _write(self, data: bytes | memoryview) -> int:
        try:
            return os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return 0

    def _sendfile(self, item: _Partial) -> bool:
        region = item.region
        while item.sent < region.length:
            try:
                n = os.sendfile(self.fd, region.fd, region.position + item.sent, region.length - item.sent)
            except (BlockingIOError, InterruptedError):
                return False
            if n == 0:
                raise OSError(f"{region.handle.path} shrank under a fetch")
            item.sent += n
            self.bytes_sendfile += n
            self.observe(n, 0)
            self.backlog_bytes -= n
        region.release()
        return True

    def _copy(self, region: FileRegion) -> bytes:
        try:
            data = os.pread(region.fd, region.length, region.position)
        finally:
            region.release()
        if len(data) != region.length:
            raise OSError(f"short read from {region.handle.path}: {len(data)} of {region.length} bytes")
        self.bytes_copied += region.length
        self.observe(0, region.length)
        return data

    def _watch(self) -> None:
        if not self._watching:
            asyncio.get_running_loop().add_writer(self.fd, self._pump)
            self._watching = True

    def _unwatch(self) -> None:
        if self._watching:
            asyncio.get_running_loop().remove_writer(self.fd)
            self._watching = False

    def close(self) -> None:
        """Drop the backlog (the connection is gone), releasing pinned regions."""
        with contextlib.suppress(RuntimeError):
            self._unwatch()
        for item in self.backlog:
            if isinstance(item, _Partial):
                item.region.release()
        self.backlog.clear()
        self.backlog_bytes = 0
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
