"""A minimal single-threaded event loop over `selectors`, with timers.

The runner is standard-library-only and must run on Python 3.9, so it cannot use trio;
asyncio would work but every source here is a plain fd with a callback, which a
selector loop expresses with less machinery and no hidden buffering.
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import sys
import time
import traceback
from collections.abc import Callable

Callback = Callable[[], None]


class Timer:
    """A pending `Loop.call_later` call; `cancel` is idempotent."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Loop:
    """Readers, writers and timers; `run` returns when `stop` is called."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._stopped = False

    def add_reader(self, fd: int, callback: Callback) -> None:
        self._watch(self._readers, fd, callback)

    def remove_reader(self, fd: int) -> None:
        self._watch(self._readers, fd, None)

    def add_writer(self, fd: int, callback: Callback) -> None:
        self._watch(self._writers, fd, callback)

    def remove_writer(self, fd: int) -> None:
        self._watch(self._writers, fd, None)

    def _watch(self, table: dict[int, Callback], fd: int, callback: Callback | None) -> None:
        """Set (or, with None, drop) `fd`'s callback in `table`."""
        if callback is not None:
            table[fd] = callback
        elif table.pop(fd, None) is None:
            return
        self._update(fd)

    def forget(self, fd: int) -> None:
        """Drop every interest in `fd` (call before closing it)."""
        self._readers.pop(fd, None)
        self._writers.pop(fd, None)
        self._update(fd)

    def call_later(self, delay: float, callback: Callback) -> Timer:
        timer = Timer(time.monotonic() + delay, callback)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def stop(self) -> None:
        self._stopped = True

    def _update(self, fd: int) -> None:
        events = (selectors.EVENT_READ if fd in self._readers else 0) | (
            selectors.EVENT_WRITE if fd in self._writers else 0
        )
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            key = None
        if key is None:
            if events:
                self._selector.register(fd, events)
        elif not events:
            self._selector.unregister(fd)
        elif key.events != events:
            self._selector.modify(fd, events)

    def run(self) -> None:
        while not self._stopped:
            timeout = None
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            for key, events in self._selector.select(timeout):
                fd = key.fd
                # A callback may have dropped this fd (or another one) meanwhile.
                if events & selectors.EVENT_READ and fd in self._readers:
                    self._call(self._readers[fd])
                if events & selectors.EVENT_WRITE and fd in self._writers:
                    self._call(self._writers[fd])
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, timer = heapq.heappop(self._timers)
                if not timer.cancelled:
                    timer.cancelled = True
                    self._call(timer.callback)

    @staticmethod
    def _call(callback: Callback) -> None:
        # A bug in one handler must not take the kernel (and the user's state) down.
        try:
            callback()
        except Exception:
            print("crucible-runner: unhandled error", file=sys.stderr)
            traceback.print_exc()
