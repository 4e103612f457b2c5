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
