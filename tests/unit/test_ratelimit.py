"""Spec 3: the rolling window, driven by an injected clock."""

from __future__ import annotations

import pytest

from crucible.ratelimit import RateLimiter


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_counts_down_then_refuses(clock: FakeClock) -> None:
    limiter = RateLimiter(900, clock)
    states = [limiter.hit("k", 3) for _ in range(5)]
    assert [s.allowed for s in states] == [True, True, True, False, False]
    assert [s.remaining for s in states] == [2, 1, 0, 0, 0]
    assert states[0].headers() == {
        "X-RateLimit-Limit": "3",
        "X-RateLimit-Remaining": "2",
        "X-RateLimit-Window": "900",
    }


def test_refused_requests_count_too(clock: FakeClock) -> None:
    limiter = RateLimiter(900, clock)
    for _ in range(10):
        limiter.hit("k", 3)
    clock.now += 899
    # Ten hits sit in the window; even a bigger limit sees all of them.
    assert limiter.hit("k", 12).remaining == 1


def test_window_rolls(clock: FakeClock) -> None:
    limiter = RateLimiter(900, clock)
    limiter.hit("k", 2)
    clock.now += 600
    limiter.hit("k", 2)
    assert not limiter.hit("k", 2).allowed
    clock.now += 300  # the first hit is now exactly one window old: gone
    state = limiter.hit("k", 2)
    assert not state.allowed  # the second and third hits (one refused) are still inside
    clock.now += 600
    assert limiter.hit("k", 2).allowed


def test_window_boundary_is_exclusive(clock: FakeClock) -> None:
    limiter = RateLimiter(10, clock)
    limiter.hit("k", 1)
    clock.now += 9.99
    assert not limiter.hit("k", 1).allowed
    clock.now += 10.01
    assert limiter.hit("k", 1).allowed


def test_keys_are_independent(clock: FakeClock) -> None:
    limiter = RateLimiter(900, clock)
    assert limiter.hit("a", 1).allowed
    assert not limiter.hit("a", 1).allowed
    assert limiter.hit("b", 1).allowed


def test_zero_limit_refuses_everything(clock: FakeClock) -> None:
    limiter = RateLimiter(900, clock)
    state = limiter.hit("k", 0)
    assert not state.allowed and state.remaining == 0


def test_memory_per_key_is_bounded(clock: FakeClock) -> None:
    limiter = RateLimiter(900, clock)
    for _ in range(100):
        for _ in range(1000):
            limiter.hit("flood", 10**9)
        clock.now += 0.1
    window = limiter._windows["flood"]
    assert window.total == 100_000
    # One bucket per second, however many requests.
    assert len(window.buckets) <= 11
    for _ in range(5000):
        clock.now += 1
        limiter.hit("flood", 10**9)
    assert len(limiter._windows["flood"].buckets) <= 901


def test_sweep_forgets_idle_keys(clock: FakeClock) -> None:
    limiter = RateLimiter(900, clock)
    for n in range(1000):
        limiter.hit(f"ip:{n}", 10)
    clock.now += 500
    limiter.hit("fresh", 10)
    assert len(limiter) == 1001
    assert limiter.sweep() == 0
    clock.now += 401
    assert limiter.sweep() == 1000
    assert len(limiter) == 1
    assert limiter.hit("fresh", 10).remaining == 8  # sweeping kept its count
    clock.now += 901
    assert limiter.sweep() == 1
    assert len(limiter) == 0


def test_clock_going_backwards_does_not_break(clock: FakeClock) -> None:
    limiter = RateLimiter(900, clock)
    limiter.hit("k", 5)
    clock.now -= 10
    state = limiter.hit("k", 5)
    assert state.remaining == 3
