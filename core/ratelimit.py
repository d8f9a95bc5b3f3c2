"""Rolling-window request counting (spec 3).

Counts are kept per key (an access key, or a client IP for public endpoints) in
one-second buckets, so memory per key is bounded by the window length however hard a
client hammers. The counts live in this process: several managers behind a load
balancer each count on their own (see README, "Rate limiting").
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable

import attrs


@attrs.frozen
class RateLimitState:
    allowed: bool
    limit: int
    remaining: int
    window: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Window": str(self.window),
        }


class _Window:
    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        # (second, count) pairs, oldest first.
        self.buckets: collections.deque[list[int]] = collections.deque()
        self.total = 0

    def expire(self, horizon: int) -> None:
        while self.buckets and self.buckets[0][0] <= horizon:
            self.total -= self.buckets.popleft()[1]

    def add(self, second: int) -> None:
        if self.buckets and self.buckets[-1][0] == second:
            self.buckets[-1][1] += 1
        else:
            self.buckets.append([second, 1])
        self.total += 1


class RateLimiter:
    """Counts every request (allowed or not) in a rolling window per key."""

    def __init__(self, window: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def hit(self, key: str, limit: int) -> RateLimitState:
        """Count one request for `key` and say whether it stays within `limit`."""
        now = math.floor(self._clock())
        win = self._windows.get(key)
        if win is None:
            win = self._windows[key] = _Window()
        win.expire(now - self.window)
        win.add(now)
        remaining = limit - win.total
        return RateLimitState(remaining >= 0, limit, max(remaining, 0), self.window)

    def sweep(self) -> int:
        """Forget keys with no request inside the window; returns how many were dropped."""
        horizon = math.floor(self._clock()) - self.window
        stale = []
        for key, win in self._windows.items():
            win.expire(horizon)
            if not win.buckets:
                stale.append(key)
        for key in stale:
            del self._windows[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._windows)
