"""How fast and how much user code an agent runs: the execution limits (docs/security.md).

Per kernel, a `TokenBucket` paces how many runs start per second; per agent, `FairSlots`
bounds how many runs execute at once and shares the slots between access keys, so that
one tenant flooding executes cannot starve the sessions of another on the same agent.
The per-kernel queue bound is `crucible.agent.execution.queue`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from crucible.config import AgentConfig


@attrs.frozen
class ExecLimits:
    """The `[agent]` settings one kernel supervisor applies to its runs."""

    #: Runs queued behind the one executing, and their code's characters together.
    queue_length: int
    queue_chars: int
    #: Runs started per second (sustained), and how many may start back to back.
    start_rate: float
    start_burst: int
    #: Seconds a cancelled run has to end after its interrupt, and again after its kill.
    cancel_grace: float
    #: Seconds a run may go without any execute call waiting on it; 0: forever.
    uncollected_timeout: float

    @classmethod
    def from_config(cls, config: AgentConfig) -> ExecLimits:
        return cls(
            queue_length=config.run_queue_length,
            queue_chars=config.run_queue_chars,
            start_rate=config.run_start_rate,
            start_burst=config.run_start_burst,
            cancel_grace=config.run_cancel_grace,
            uncollected_timeout=config.uncollected_run_timeout,
        )

    @classmethod
    def defaults(cls) -> ExecLimits:
        return cls.from_config(AgentConfig())


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; one token per run started.

    The bucket starts full, so a kernel that is mostly idle never waits; only a kernel
    that keeps starting runs faster than `rate` is slowed down to it.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(max(1, burst))
        self._tokens = self.burst
        self._updated: float | None = None

    def _refill(self) -> None:
        now = trio.current_time()
        if self._updated is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    async def wait_ready(self) -> None:
        """Return once a token is there (without taking it)."""
        self._refill()
        while self._tokens < 1:
            await trio.sleep((1 - self._tokens) / self.rate)
            self._refill()

    def take(self) -> None:
        self._refill()
        self._tokens -= 1


@attrs.define
class _Waiter:
    key: str
    seq: int
    granted: trio.Event = attrs.Factory(trio.Event)


class FairSlots:
    """At most `limit` runs executing at once on this agent, shared fairly by access key.

    A slot that frees goes to the waiting run whose access key holds the fewest slots;
    among keys that hold as many, to the key served least recently; within a key, to
    its oldest waiting run. "Fewest held" alone is not enough: with one slot, the key
    that just released it holds none either, and would win again whenever its next run
    queued before the other tenant's; "served least recently" makes that a round robin.
    Slots are not taken back from runs that hold them: a run holds its slot until it
    ends, at the latest at its kernel's time limit.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._in_use = 0
        self._held: dict[str, int] = {}
        #: Grant order per key; only for keys holding a slot or waiting for one.
        self._last_served: dict[str, int] = {}
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._grants = itertools.count()

    @classmethod
    def unlimited(cls) -> FairSlots:
        return cls(math.inf)

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def held_by(self, key: str) -> int:
        return self._held.get(key, 0)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """A slot for the block's duration (waiting for one first if all are taken)."""
        await self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

    async def acquire(self, key: str) -> None:
        if self._in_use < self.limit and not self._waiters:
            # Checked before the grant: a cancellation after it would leak the slot.
            await trio.lowlevel.checkpoint_if_cancelled()
            self._grant(key)
            return
        waiter = _Waiter(key, next(self._seq))
        self._waiters.append(waiter)
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():
                self.release(key)  # granted just as we were cancelled: hand it on
            else:
                self._waiters.remove(waiter)
                self._forget_idle(key)
            raise

    def release(self, key: str) -> None:
        self._in_use -= 1
        left = self._held[key] - 1
        if left:
            self._held[key] = left
        else:
            del self._held[key]
        self._hand_out()
        self._forget_idle(key)

    def _grant(self, key: str) -> None:
        self._in_use += 1
        self._held[key] = self._held.get(key, 0) + 1
        self._last_served[key] = next(self._grants)

    def _hand_out(self) -> None:
        while self._waiters and self._in_use < self.limit:
            best = min(
                self._waiters,
                key=lambda w: (self._held.get(w.key, 0), self._last_served.get(w.key, -1), w.seq),
            )
            self._waiters.remove(best)
            self._grant(best.key)
            best.granted.set()

    def _forget_idle(self, key: str) -> None:
        # A key that neither holds nor waits starts afresh next time (bounded memory).
        if key not in self._held and not any(w.key == key for w in self._waiters):
            self._last_served.pop(key, None)
