"""A TCP proxy on loopback that cuts every connection through it at random moments: the "network
fault" between a client and a broker (the broker advertises the proxy, so all traffic crosses it)."""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections.abc import Iterator


class FaultProxy:
    def __init__(self, target_port: int, *, cut_every_s: tuple[float, float] = (0.3, 1.0), seed: int = 7) -> None:
        self.target_port = target_port
        self.cut_every_s = cut_every_s
        self.rng = random.Random(seed)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.cuts = 0
        self._stop = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self.enabled = True

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._chaos, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _chaos(self) -> None:
        while not self._stop.wait(self.rng.uniform(*self.cut_every_s)):
            if not self.enabled:
                continue
            with self._lock:
                pairs, self._pairs = self._pairs, []
            for client, upstream in pairs:
                for s in (client, upstream):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()
                self.cuts += 1

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        with self._lock:
            for client, upstream in self._pairs:
                client.close()
                upstream.close()


@contextlib.contextmanager
def fault_proxy(target_port: int, **kwargs: object) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target_port, **kwargs)  # type: ignore[arg-type]
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
        time.sleep(0.05)


class Link:
    """A TCP proxy on loopback that forwards faithfully until ``cut()``, then black-holes: bytes in
    either direction are dropped (connections stay open, as behind a firewall that drops packets)
    and new connections are accepted but never reach the target. ``heal()`` closes every
    connection that lived through the cut (their byte streams lost data) and forwards again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.is_cut = False
        self.cuts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._tainted: list[socket.socket] = []

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self.is_cut = True
            self.cuts += 1
            self._tainted.extend(self._open)

    def heal(self) -> None:
        with self._lock:
            self.is_cut = False
            tainted, self._tainted = self._tainted, []
        for s in tainted:
            _close(s)

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._open.append(client)
                if self.is_cut:
                    self._tainted.append(client)
                    continue  # held open, never forwarded, closed on heal
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.append(upstream)
                if self.is_cut:
                    self._tainted.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not self.is_cut:
                    dst.sendall(data)
        for s in (src, dst):
            _close(s)
        with self._lock:
            self._open = [s for s in self._open if s not in (src, dst)]

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        with self._lock:
            sockets, self._open, self._tainted = self._open, [], []
        for s in sockets:
            _close(s)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()
