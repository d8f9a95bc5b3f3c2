"""One kernel's runs, started one at a time within the limits, and held to them.

Runs start in order (FIFO), within the execution limits (`crucible.agent.execution.
limits`: the kernel's start rate and a slot of the agent's), each under the image's time
limit. A run whose client went away is cancelled: taken out of the queue, or
interrupted and, if it does not end within the grace, killed; a run that survives its
kill, or outlives its time limit, ends the kernel.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

import attrs
import trio

from crucible.agent.execution.limits import ExecLimits, FairSlots, TokenBucket
from crucible.agent.execution.output import Handover, Run, RunState
from crucible.agent.execution.queue import RunQueue
from crucible.agent.kernel.runner_link import RunnerConnection, RunnerGone

log = logging.getLogger(__name__)

#: Exit code of a run cancelled before it started (its client went away), as if
#: interrupted; and the note its output gets, should anyone still collect it.
CANCELLED_EXIT_CODE = 130
CANCELLED_NOTE = "[crucible] run cancelled before it started: its client went away\n"


@attrs.define(eq=False)
class RunDispatcher:
    """The queue of one kernel's runs and the one that executes.

    `end_kernel(reason)` is called when a run leaves the kernel no other way out (its
    time limit, a kill it survived); the dispatcher stops there.
    """

    kernel_id: str
    #: The image's limit on one run, in seconds (0: none).
    exec_timeout: float = attrs.field(kw_only=True)
    #: The owner's: the agent's execution slots are shared fairly by key.
    access_key: str = attrs.field(kw_only=True)
    limits: ExecLimits = attrs.field(kw_only=True)
    #: The agent's execution slots, shared by all its kernels.
    slots: FairSlots = attrs.field(kw_only=True)
    _end_kernel: Callable[[str], Awaitable[None]] = attrs.field(kw_only=True)
    #: The run executing now (or adopted from the runner's ``hello``).
    current: Run | None = attrs.field(default=None, init=False)
    _runner: RunnerConnection | None = attrs.field(default=None, init=False)
    #: When the current run's owner gave up on it (trio clock); None if they did not.
    _cancelled_at: float | None = attrs.field(default=None, init=False)
    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)
    _start_rate: TokenBucket = attrs.field(init=False)
    _queue: RunQueue = attrs.field(init=False)

    @_start_rate.default
    def _kernel_pace(self) -> TokenBucket:
        return TokenBucket(self.limits.start_rate, self.limits.start_burst)

    @_queue.default
    def _bounded_queue(self) -> RunQueue:
        return RunQueue(max_runs=self.limits.queue_length, max_chars=self.limits.queue_chars)

    @property
    def queued(self) -> int:
        """Runs waiting to start (not counting the one executing)."""
        return len(self._queue)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- what the supervisor tells it -----------------------------------------------------

    def submit(self, run: Run) -> None:
        """Queue `run`; `QueueFull` past the queue's bounds (nothing is kept then)."""
        self._queue.push(run)
        self._wake()

    def was_cancelled(self, run_id: str) -> bool:
        """Whether `run_id` was cancelled before its execute call arrived."""
        return self._queue.was_cancelled(run_id)

    def connected(self, runner: RunnerConnection) -> None:
        """The runner dialled in: runs go to `runner` from now on."""
        self._runner = runner

    def adopt(self, run: Run) -> None:
        """`run` is executing already (the runner's ``hello`` says so)."""
        self.current = run

    def finished(self, run: Run) -> None:
        """The runner reported `run`'s end."""
        if run is self.current:
            self.current = None
            self._wake()

    def clear(self) -> None:
        """The kernel is gone: no queued run ever starts."""
        self._queue.clear()

    # -- the dispatcher's task ------------------------------------------------------------

    async def run(
        self, supervision: trio.CancelScope, adopted: tuple[Run, float] | None = None
    ) -> None:
        """Start queued runs one at a time (FIFO), each under the image's time limit.

        `adopted`: a run already going, and its elapsed seconds. A runner that cannot
        be written to is as dead as one that hung up: end `supervision`, so the kernel
        is reported like any other death.
        """
        runner = self._runner
        assert runner is not None, "connected() comes first"
        try:
            await self._dispatch_forever(runner, adopted)
        except RunnerGone as exc:
            log.info("kernel %s: %s", self.kernel_id, exc)
            supervision.cancel()

    async def _dispatch_forever(
        self, runner: RunnerConnection, adopted: tuple[Run, float] | None
    ) -> None:
        async with trio.open_nursery() as nursery:
            if self.limits.uncollected_timeout > 0:
                nursery.start_soon(self._cancel_unheard_runs)
            if adopted is not None:
                # A run this agent inherited (it restarted while the run went on) holds
                # a slot and its time limit like any other, less the time already spent.
                inherited, elapsed = adopted
                async with self.slots.hold(self.access_key):
                    await self._watch(runner, inherited, elapsed=elapsed)
            while True:
                while not self._queue:
                    await self._changed.wait()
                # The kernel's pace first, then a slot of the agent's; either may take
                # a while, and the queue may have emptied meanwhile (cancelled runs).
                await self._start_rate.wait_ready()
                async with self.slots.hold(self.access_key):
                    run = self._queue.pop()
                    if run is None:
                        continue
                    self._start_rate.take()
                    await self._start(runner, run)
                    await self._watch(runner, run)

    async def _start(self, runner: RunnerConnection, run: Run) -> None:
        self.current = run
        self._cancelled_at = None
        run.state = RunState.RUNNING
        await runner.send(
            {
                "op": "execute",
                "run_id": run.run_id,
                "mode": run.mode,
                "code": run.code,
                "options": run.options,
            }
        )

    async def _watch(self, runner: RunnerConnection, run: Run, *, elapsed: float = 0.0) -> None:
        """Wait for `run` to end, enforcing the image's time limit and, once its owner
        cancelled it, the grace it has to end after the interrupt and after the kill.

        `elapsed`: seconds the run has been going already (a run adopted after an agent
        restart).
        """
        limit = self.exec_timeout
        deadline = trio.current_time() + limit - elapsed if limit > 0 else math.inf
        killed_at: float | None = None
        while not run.done:
            wake = deadline
            if self._cancelled_at is not None:
                since = killed_at if killed_at is not None else self._cancelled_at
                wake = min(wake, since + self.limits.cancel_grace)
            changed = self._changed
            with trio.move_on_at(wake):
                await changed.wait()
            if run.done:
                break
            now = trio.current_time()
            if now >= deadline:
                log.info("kernel %s: run %s exceeded %s s", self.kernel_id, run.run_id, limit)
                await self._end_kernel("exec-timeout")
                return
            if now < wake:
                continue
            if killed_at is None:
                log.info(
                    "kernel %s: cancelled run %s outlived its interrupt; killing it",
                    self.kernel_id,
                    run.run_id,
                )
                killed_at = now
                await runner.send({"op": "kill", "run_id": run.run_id})
            else:
                log.warning(
                    "kernel %s: cancelled run %s survived its kill; ending the kernel",
                    self.kernel_id,
                    run.run_id,
                )
                await self._end_kernel("cancel-failed")
                return
        self.current = None

    async def _cancel_unheard_runs(self) -> None:
        """Cancel runs no execute call has waited on for the uncollected-run timeout.

        Their client is gone without a disconnect anyone could see: a long-polling client
        (the 18.12 SDK sends ``continue`` calls back to back) that vanished between calls.
        """
        timeout = self.limits.uncollected_timeout
        while True:
            await trio.sleep(min(timeout / 4, 5.0))
            for run in [*self._queue, self.current]:
                if run is not None and not run.done and run.unheard_for() > timeout:
                    log.info(
                        "kernel %s: nobody collected run %s for %.0f s; cancelling it",
                        self.kernel_id,
                        run.run_id,
                        timeout,
                    )
                    await self.cancel(run)

    # -- cancellation ---------------------------------------------------------------------

    def remember_cancel(self, run_id: str) -> None:
        """`run_id` is not here (yet): an execute call that arrives later for it finishes
        at once."""
        self._queue.remember_cancel(run_id)

    async def cancel(self, run: Run) -> str:
        """Stop `run`, whose client went away; returns what became of it.

        ``dequeued``: it was queued and never starts; ``interrupting``: it was running
        and is interrupted now, killed after the grace (`_watch`); ``finished``: it was
        over already.
        """
        if run.done:
            return "finished"
        if self._queue.remove(run):
            run.add_console(["stderr", CANCELLED_NOTE])
            run.hand_over(Handover("finished", CANCELLED_EXIT_CODE))
            return "dequeued"
        runner = self._runner
        if run is self.current and self._cancelled_at is None and runner is not None:
            self._cancelled_at = trio.current_time()
            self._wake()
            try:
                # Scoped to the run: should it end meanwhile, the next one is spared.
                await runner.send({"op": "interrupt", "run_id": run.run_id})
            except RunnerGone:
                pass  # the kernel is ending anyway
        return "interrupting"
