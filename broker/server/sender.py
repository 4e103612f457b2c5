"""Writing responses whose parts are bytes and file regions: zero-copy when the socket has room.

uvloop has no ``loop.sendfile``. While the transport's own buffer is empty, nothing is queued ahead
of us, so bytes may go straight to the socket (``os.send``-like ``os.write``) and regions with
``os.sendfile`` from the page cache; the first time the socket is full, the rest of the response
(and everything after it) is handed to the transport, regions copied with ``pread``. Order is kept
because direct writes only ever happen while the transport has nothing buffered.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable

from tidelog.broker.log.files import FileRegion

Part = bytes | memoryview | FileRegion


class Sender:
    def __init__(self, transport: asyncio.Transport, zero_copy: bool) -> None:
        self.transport = transport
        self.fd = -1
        if zero_copy:
            sock = transport.get_extra_info("socket")
            self.fd = sock.fileno() if sock is not None else -1
        self.bytes_sendfile = 0
        self.bytes_copied = 0

    def send(self, parts: Iterable[Part]) -> None:
        """Write ``parts`` in order; regions are released once their bytes are sent or copied."""
        direct = self.fd >= 0 and self.transport.get_write_buffer_size() == 0
        queued: list[bytes | memoryview] = []
        for part in parts:
            if isinstance(part, FileRegion):
                try:
                    sent = self._sendfile(part) if direct and not queued else 0
                    if sent < part.length:
                        direct = False
                        queued.append(_pread(part, sent))
                        self.bytes_copied += part.length - sent
                finally:
                    part.release()
            elif direct and not queued:
                sent = self._write(part)
                if sent < len(part):
                    direct = False
                    queued.append(memoryview(part)[sent:])
            else:
                queued.append(part)
        if queued:
            self.transport.writelines(queued)

    def _write(self, data: bytes | memoryview) -> int:
        try:
            return os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return 0

    def _sendfile(self, region: FileRegion) -> int:
        sent = 0
        while sent < region.length:
            try:
                n = os.sendfile(self.fd, region.fd, region.position + sent, region.length - sent)
            except (BlockingIOError, InterruptedError):
                break
            if n == 0:
                break
            sent += n
        self.bytes_sendfile += sent
        return sent


def _pread(region: FileRegion, skip: int) -> bytes:
    """Copy what is left of a region (a short read means the file shrank under us: fail loudly)."""
    length = region.length - skip
    data = os.pread(region.fd, length, region.position + skip)
    if len(data) != length:
        raise OSError(f"short read from {region.handle.path}: {len(data)} of {length} bytes")
    return data
