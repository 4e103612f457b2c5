"""Failed SASL authentications, counted per client address, to stop password guessing.

Each failure is remembered for a minute. An address with ``limit`` failures in the last minute is
refused further attempts, without its credentials even being checked, until its oldest failure
ages out; a correct password does not clear the count (one known account must not shield guessing
at the others). The broker answers a refused attempt as any failure (SASL_AUTHENTICATION_FAILED,
after ``connection.failed.authentication.delay.ms``, then closes the connection) and logs the
block once per address and window. At most ``max_addresses`` addresses are tracked; the least
recently failed are forgotten first.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

WINDOW_S = 60.0


class FailedAuthLimiter:
    def __init__(
        self,
        limit: int,
        window_s: float = WINDOW_S,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit  # 0: never block
        self.window_s = window_s
        self.max_addresses = max_addresses
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._announced: dict[str, float] = {}  # address -> when its block was logged

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[address]
            self._announced.pop(address, None)
            return None
        return times

    def blocked_for(self, address: str) -> float:
        """Seconds until ``address`` may try again (0: it may now)."""
        if self.limit <= 0:
            return 0.0
        now = self.clock()
        times = self._recent(address, now)
        if times is None or len(times) < self.limit:
            return 0.0
        return times[-self.limit] + self.window_s - now

    def first_refusal(self, address: str) -> bool:
        """True once per block of ``address`` (for a single log line)."""
        if address in self._announced:
            return False
        self._announced[address] = self.clock()
        return True

    def failed(self, address: str) -> None:
        now = self.clock()
        times = self._recent(address, now)
        if times is None:
            times = self._failures[address] = deque(maxlen=max(self.limit, 1))
        times.append(now)
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            forgotten, _ = self._failures.popitem(last=False)
            self._announced.pop(forgotten, None)
