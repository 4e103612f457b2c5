"""Failed-authentication limits per address: a sliding minute, blocks that expire, bounded memory."""

from __future__ import annotations

from tidelog.broker.security.auth_limiter import FailedAuthLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_blocked_after_the_limit_until_its_oldest_failure_ages_out() -> None:
    clock = Clock()
    limiter = FailedAuthLimiter(3, clock=clock)
    for _ in range(2):
        limiter.failed("10.0.0.1")
        clock.now += 10
    assert limiter.blocked_for("10.0.0.1") == 0
    limiter.failed("10.0.0.1")  # third failure at t=1020; the first was at t=1000
    assert limiter.blocked_for("10.0.0.1") == 40.0
    assert limiter.blocked_for("10.0.0.2") == 0  # other addresses are unaffected
    assert limiter.first_refusal("10.0.0.1")
    assert not limiter.first_refusal("10.0.0.1")
    clock.now = 1060.0  # the first failure has aged out
    assert limiter.blocked_for("10.0.0.1") == 0
    limiter.failed("10.0.0.1")
    assert limiter.blocked_for("10.0.0.1") == 10.0  # failures at 1010, 1020, 1060: free again at 1070


def test_zero_means_no_limit_and_memory_is_bounded() -> None:
    clock = Clock()
    off = FailedAuthLimiter(0, clock=clock)
    for _ in range(100):
        off.failed("10.0.0.1")
    assert off.blocked_for("10.0.0.1") == 0
    small = FailedAuthLimiter(1, max_addresses=2, clock=clock)
    for address in ("a", "b", "c"):
        small.failed(address)
    assert small.blocked_for("a") == 0  # forgotten: the least recently failed
    assert small.blocked_for("c") == 60.0
