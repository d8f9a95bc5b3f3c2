"""One kernel's queue of runs waiting to start: FIFO, bounded, and cancellable by id.

The bound is what keeps a flood of executes on one session from piling up work (and
code, up to a request body each) in the agent: past it a run is refused at once with
`QueueFull`, which the manager reports as ``429 execution-queue-full``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

from crucible.agent.execution.output import Run

#: Run ids cancelled before their execute call reached the agent, remembered so that
#: the late call does not queue them after all (calls on one link may overtake).
REMEMBERED_CANCELS = 256


class QueueFull(Exception):
    """The kernel's queue is at its bound; the message says which one."""


class RunQueue:
    def __init__(self, *, max_runs: int, max_chars: int) -> None:
        self.max_runs = max_runs
        self.max_chars = max_chars
        self._runs: collections.deque[Run] = collections.deque()
        self._chars = 0
        self._cancelled_early: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(list(self._runs))

    @property
    def chars(self) -> int:
        return self._chars

    def push(self, run: Run) -> None:
        if len(self._runs) >= self.max_runs:
            raise QueueFull(
                f"{len(self._runs)} runs are already queued in this session (at most "
                f"{self.max_runs}); wait for them to finish or interrupt them"
            )
        if self._runs and self._chars + len(run.code) > self.max_chars:
            # An empty queue takes any run: the request body limit bounds its code.
            raise QueueFull(
                f"the runs queued in this session hold {self._chars} characters of code "
                f"(at most {self.max_chars} together); wait for them to finish"
            )
        self._runs.append(run)
        self._chars += len(run.code)

    def pop(self) -> Run | None:
        if not self._runs:
            return None
        run = self._runs.popleft()
        self._chars -= len(run.code)
        return run

    def remove(self, run: Run) -> bool:
        """Take `run` out (it will never start); False if it is not queued."""
        try:
            self._runs.remove(run)
        except ValueError:
            return False
        self._chars -= len(run.code)
        return True

    def clear(self) -> None:
        self._runs.clear()
        self._chars = 0

    # -- cancels that arrive before their run ------------------------------------------------

    def remember_cancel(self, run_id: str) -> None:
        self._cancelled_early[run_id] = None
        while len(self._cancelled_early) > REMEMBERED_CANCELS:
            self._cancelled_early.popitem(last=False)

    def was_cancelled(self, run_id: str) -> bool:
        """Whether `run_id` was cancelled before it arrived (forgotten once asked)."""
        if run_id not in self._cancelled_early:
            return False
        del self._cancelled_early[run_id]
        return True
