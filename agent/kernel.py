"""One kernel: its container, its runner connection and its queue of runs.

A `KernelSupervisor` lives in its own task in the agent's nursery. Cancelling that
task (agent shutdown) leaves the container running so a restarted agent can recover
it; `terminate()` is what removes a kernel for good.

Runs start one at a time, in order, within the execution limits (`crucible.agent.
exec_limits`: the kernel's start rate and a slot of the agent's); a run whose client
went away is cancelled (`cancel_run`): taken out of the queue, or interrupted and, if
it does not end within the grace, killed.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from crucible.agent.cgroups import oom_kill_count
from crucible.agent.exec_limits import ExecLimits, FairSlots, TokenBucket
from crucible.agent.run_queue import RunQueue
from crucible.agent.runner_link import RunnerConnection, RunnerGone, RunnerListener
from crucible.agent.runs import Handover, Run, RunState, SessionOutput, execution_result
from crucible.protocol.calls import ExecutionResult
from crucible.protocol.stats import KernelStats

log = logging.getLogger(__name__)

#: Exit code reported when a run ends because its kernel died under it.
KERNEL_DIED_EXIT_CODE = 130
#: Exit code of a run cancelled before it started (its client went away), as if
#: interrupted; and the note its output gets, should anyone still collect it.
CANCELLED_EXIT_CODE = 130
CANCELLED_NOTE = "[crucible] run cancelled before it started: its client went away\n"

TerminationCallback = Callable[["KernelSupervisor", str], Awaitable[None]]


class KernelGone(Exception):
    """The kernel was terminated; further calls on it fail."""


@attrs.frozen
class KernelInfo:
    """What the agent knows about a kernel, also recoverable from container labels."""

    kernel_id: str
    image: str
    lang: str
    exec_timeout: float  # seconds; 0 = unlimited
    cpu: float
    mem: int
    environ: dict[str, str]
    #: The host directory holding ``work/`` (the session's /home/work) and ``ipc/``.
    kernel_dir: Path
    #: Mounted vfolders: ``(host path, container path, read-only)`` (spec 4.2 mounts).
    mounts: tuple[tuple[str, str, bool], ...] = ()
    #: The owner's access key: the agent shares execution slots fairly between keys.
    access_key: str = ""

    @property
    def ipc_dir(self) -> Path:
        """Where the agent listens for the runner (the container sees it read-only)."""
        return self.kernel_dir / "ipc"


class KernelSupervisor:
    def __init__(
        self,
        info: KernelInfo,
        container_id: str,
        *,
        on_terminated: TerminationCallback,
        output: SessionOutput,
        listener: RunnerListener,
        connect_timeout: float,
        limits: ExecLimits | None = None,
        slots: FairSlots | None = None,
    ) -> None:
        self.info = info
        self.container_id = container_id
        self._on_terminated = on_terminated
        self._listener = listener
        self._connect_timeout = connect_timeout
        #: This session's share of the agent's memory for uncollected output.
        self.output = output
        self._runner: RunnerConnection | None = None
        self._runs: dict[str, Run] = {}
        self._limits = limits or ExecLimits.defaults()
        #: The agent's execution slots, shared by all its kernels.
        self._slots = slots or FairSlots.unlimited()
        self._start_rate = TokenBucket(self._limits.start_rate, self._limits.start_burst)
        self._queue = RunQueue(
            max_runs=self._limits.queue_length, max_chars=self._limits.queue_chars
        )
        self._current: Run | None = None
        #: When the current run's owner gave up on it (trio clock); None if they did not.
        self._cancelled_at: float | None = None
        self._queue_changed = trio.Event()
        self._completions: dict[str, trio.MemorySendChannel[list[str]]] = {}
        self._request_ids = itertools.count(1)
        self._cancel_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.terminated_reason: str | None = None
        self.connected = trio.Event()
        self.last_stats: KernelStats | None = None
        #: What the container printed when it died before its runner answered.
        self.startup_output = ""

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Wait for the runner to dial in, then pump its messages and the run queue
        until the kernel dies or is terminated."""
        with trio.CancelScope() as scope:
            self._cancel_scope = scope
            try:
                try:
                    self._runner, hello = await self._listener.accept(
                        self.container_id, timeout=self._connect_timeout
                    )
                finally:
                    # One runner per container: nobody else has anything to say here.
                    self._listener.close()
            except (trio.TooSlowError, RunnerGone, OSError):
                task_status.started()
                await self._died("runner-unreachable")
                return
            adopted = self._adopt(hello.get("run"))
            self.connected.set()
            task_status.started()
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._dispatch_runs, nursery.cancel_scope, adopted)
                    await self._pump_runner()
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await self._runner.aclose()
            # The socket closed: the container is dead or dying.
            await self._died("self-terminated")

    def _adopt(self, reported: Any) -> tuple[Run, float] | None:
        """Take over the run the runner reports in its ``hello`` (this agent restarted
        while it ran): its output keeps flowing to whoever continues it, and it stays
        held to its time limit. Returns the run and its elapsed seconds, if it still
        runs."""
        if not isinstance(reported, dict):
            return None
        run_id = reported.get("run_id")
        if not isinstance(run_id, str) or not run_id or run_id in self._runs:
            return None
        mode = reported.get("mode")
        run = Run(run_id, mode if mode in ("query", "batch") else "query", "", {}, self.output)
        run.state = RunState.RUNNING
        self._runs[run_id] = run
        log.info("kernel %s: adopted run %s from the runner", self.info.kernel_id, run_id)
        if reported.get("finished") is True:
            return None  # its end is on the way; nothing left to limit
        self._current = run
        elapsed = reported.get("elapsed")
        if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)):
            elapsed = 0.0
        if not math.isfinite(elapsed) or elapsed < 0:
            elapsed = 0.0  # a broken report counts as "just started"
        return run, float(elapsed)

    async def _died(self, reason: str) -> None:
        if self.terminated_reason is None:
            self.terminated_reason = reason
            self._fail_runs()
            with trio.CancelScope(shield=True):
                await self._on_terminated(self, reason)

    async def _end_if_oom_killed(self) -> None:
        count = await trio.to_thread.run_sync(oom_kill_count, self.container_id)
        if count:
            log.info("kernel %s: the OOM killer struck (%d kills)", self.info.kernel_id, count)
            await self._died("out-of-memory")
            self.mark_terminated("out-of-memory")

    def mark_terminated(self, reason: str) -> None:
        """Stop supervising: runs end, callers get `KernelGone`. Does not touch Docker."""
        if self.terminated_reason is None:
            self.terminated_reason = reason
        self._fail_runs(timeout=reason == "exec-timeout")
        if self._cancel_scope is not None:
            self._cancel_scope.cancel()

    def _fail_runs(self, *, timeout: bool = False) -> None:
        for run in list(self._runs.values()):
            if not run.done:
                if timeout and run is self._current:
                    run.hand_over(Handover("exec-timeout"))
                else:
                    run.hand_over(Handover("finished", KERNEL_DIED_EXIT_CODE))
        self._queue.clear()
        for channel in self._completions.values():
            channel.close()
        self._completions.clear()

    # -- runner messages ------------------------------------------------------------------

    async def _pump_runner(self) -> None:
        assert self._runner is not None
        while True:
            try:
                message = await self._runner.receive()
            except RunnerGone as exc:
                log.info("kernel %s: runner gone (%s)", self.info.kernel_id, exc)
                return
            self._on_runner_message(message)

    def _on_runner_message(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        run = self._runs.get(str(message.get("run_id")))
        if op == "console" and run is not None:
            for item in message.get("items") or []:
                if isinstance(item, list) and len(item) == 2:
                    run.add_console(item)
        elif op == "waiting-input" and run is not None:
            run.hand_over(
                Handover("waiting-input", options={"is_password": bool(message.get("is_password"))})
            )
        elif op == "step-finished" and run is not None:
            step = message.get("step")
            if step in ("clean", "build"):
                run.hand_over(Handover(f"{step}-finished", _exit_code(message)))
        elif op == "finished" and run is not None:
            exit_code = _exit_code(message)
            run.hand_over(Handover("finished", exit_code))
            if run is self._current:
                self._current = None
                self._wake_dispatcher()
            if (exit_code < 0 or exit_code >= 128) and self._nursery is not None:
                # Killed by a signal: if that was the OOM killer, the session ends.
                self._nursery.start_soon(self._end_if_oom_killed)
        elif op == "completion":
            channel = self._completions.pop(str(message.get("req_id")), None)
            if channel is not None:
                items = message.get("items") or []
                channel.send_nowait([str(i) for i in items])
                channel.close()
        elif op == "error":
            log.warning("kernel %s: runner error: %s", self.info.kernel_id, message.get("message"))

    # -- runs -----------------------------------------------------------------------------

    def _wake_dispatcher(self) -> None:
        self._queue_changed.set()
        self._queue_changed = trio.Event()

    async def _dispatch_runs(
        self, supervision: trio.CancelScope, adopted: tuple[Run, float] | None = None
    ) -> None:
        """Start queued runs one at a time (FIFO), each under the image's time limit.

        A runner that cannot be written to is as dead as one that hung up: end
        `supervision`, so the kernel is reported like any other death.
        """
        try:
            await self._dispatch_forever(adopted)
        except RunnerGone as exc:
            log.info("kernel %s: %s", self.info.kernel_id, exc)
            supervision.cancel()

    async def _dispatch_forever(self, adopted: tuple[Run, float] | None) -> None:
        async with trio.open_nursery() as nursery:
            if self._limits.uncollected_timeout > 0:
                nursery.start_soon(self._cancel_unheard_runs)
            if adopted is not None:
                # A run this agent inherited (it restarted while the run went on) holds
                # a slot and its time limit like any other, less the time already spent.
                inherited, elapsed = adopted
                async with self._slots.hold(self.info.access_key):
                    await self._watch(inherited, elapsed=elapsed)
            while True:
                while not self._queue:
                    await self._queue_changed.wait()
                # The kernel's pace first, then a slot of the agent's; either may take
                # a while, and the queue may have emptied meanwhile (cancelled runs).
                await self._start_rate.wait_ready()
                async with self._slots.hold(self.info.access_key):
                    run = self._queue.pop()
                    if run is None:
                        continue
                    self._start_rate.take()
                    await self._start(run)
                    await self._watch(run)

    async def _start(self, run: Run) -> None:
        assert self._runner is not None
        self._current = run
        self._cancelled_at = None
        run.state = RunState.RUNNING
        await self._runner.send(
            {
                "op": "execute",
                "run_id": run.run_id,
                "mode": run.mode,
                "code": run.code,
                "options": run.options,
            }
        )

    async def _watch(self, run: Run, *, elapsed: float = 0.0) -> None:
        """Wait for `run` to end, enforcing the image's time limit and, once its owner
        cancelled it, the grace it has to end after the interrupt and after the kill.

        `elapsed`: seconds the run has been going already (a run adopted after an agent
        restart).
        """
        assert self._runner is not None
        limit = self.info.exec_timeout
        deadline = trio.current_time() + limit - elapsed if limit > 0 else math.inf
        killed_at: float | None = None
        while not run.done:
            wake = deadline
            if self._cancelled_at is not None:
                since = killed_at if killed_at is not None else self._cancelled_at
                wake = min(wake, since + self._limits.cancel_grace)
            changed = self._queue_changed
            with trio.move_on_at(wake):
                await changed.wait()
            if run.done:
                break
            now = trio.current_time()
            if now >= deadline:
                log.info("kernel %s: run %s exceeded %s s", self.info.kernel_id, run.run_id, limit)
                await self._end_kernel("exec-timeout")
                return
            if now < wake:
                continue
            if killed_at is None:
                log.info(
                    "kernel %s: cancelled run %s outlived its interrupt; killing it",
                    self.info.kernel_id,
                    run.run_id,
                )
                killed_at = now
                await self._runner.send({"op": "kill", "run_id": run.run_id})
            else:
                log.warning(
                    "kernel %s: cancelled run %s survived its kill; ending the kernel",
                    self.info.kernel_id,
                    run.run_id,
                )
                await self._end_kernel("cancel-failed")
                return
        self._current = None

    async def _end_kernel(self, reason: str) -> None:
        self.mark_terminated(reason)
        with trio.CancelScope(shield=True):
            await self._on_terminated(self, reason)

    async def _cancel_unheard_runs(self) -> None:
        """Cancel runs no execute call has waited on for the uncollected-run timeout.

        Their client is gone without a disconnect anyone could see: a long-polling client
        (the 18.12 SDK sends ``continue`` calls back to back) that vanished between calls.
        """
        timeout = self._limits.uncollected_timeout
        while True:
            await trio.sleep(min(timeout / 4, 5.0))
            for run in [*self._queue, self._current]:
                if run is not None and not run.done and run.unheard_for() > timeout:
                    log.info(
                        "kernel %s: nobody collected run %s for %.0f s; cancelling it",
                        self.info.kernel_id,
                        run.run_id,
                        timeout,
                    )
                    await self.cancel_run(run.run_id)

    async def cancel_run(self, run_id: str) -> str:
        """Stop run `run_id`, whose client went away; returns what became of it.

        ``dequeued``: it was queued and never starts; ``interrupting``: it was running
        and is interrupted now, killed after the grace (`_watch`); ``finished``: it was
        over already; ``unknown``: not here (yet: an execute call that arrives later
        for it finishes at once).
        """
        run = self._runs.get(run_id)
        if run is None:
            self._queue.remember_cancel(run_id)
            return "unknown"
        if run.done:
            return "finished"
        if self._queue.remove(run):
            run.add_console(["stderr", CANCELLED_NOTE])
            run.hand_over(Handover("finished", CANCELLED_EXIT_CODE))
            return "dequeued"
        if run is self._current and self._cancelled_at is None and self._runner is not None:
            self._cancelled_at = trio.current_time()
            self._wake_dispatcher()
            try:
                # Scoped to the run: should it end meanwhile, the next one is spared.
                await self._runner.send({"op": "interrupt", "run_id": run_id})
            except RunnerGone:
                pass  # the kernel is ending anyway
        return "interrupting"

    @property
    def queued_runs(self) -> int:
        """Runs waiting to start (not counting the one executing)."""
        return len(self._queue)

    def _check_alive(self) -> None:
        if self.terminated_reason is not None:
            raise KernelGone(self.terminated_reason)

    async def execute(
        self,
        run_id: str,
        mode: str,
        code: str,
        options: dict[str, Any],
        *,
        flush_interval: float,
    ) -> ExecutionResult:
        """One execute call: start, continue or answer input for run `run_id`."""
        run = self._runs.get(run_id)
        if mode in ("query", "batch"):
            if run is None:
                self._check_alive()
                if self._queue.was_cancelled(run_id):
                    cancelled = Handover("finished", CANCELLED_EXIT_CODE)
                    return execution_result(run_id, cancelled, [["stderr", CANCELLED_NOTE]])
                run = Run(run_id, mode, code, options, self.output)
                self._queue.push(run)  # QueueFull: refused, nothing kept
                self._runs[run_id] = run
                self._wake_dispatcher()
                self._forget_old_runs()
        elif run is None:
            # A continuation of a run this kernel does not know (e.g. after a restart).
            return execution_result(run_id, Handover("finished", KERNEL_DIED_EXIT_CODE))
        elif mode == "input":
            self._check_alive()
            assert self._runner is not None
            await self._runner.send({"op": "input", "run_id": run_id, "text": code})
        result = await run.collect(flush_interval)
        if run.done and result.status in ("finished", "exec-timeout"):
            self._runs.pop(run_id, None)
            run.forget()
        return result

    def _forget_old_runs(self, keep: int = 64) -> None:
        # Finished runs whose last result nobody fetched must not pile up forever.
        done = [rid for rid, r in self._runs.items() if r.done]
        for rid in done[: max(0, len(done) - keep)]:
            self._runs.pop(rid).forget()

    async def interrupt(self) -> None:
        self._check_alive()
        assert self._runner is not None
        await self._runner.send({"op": "interrupt"})

    async def complete(self, code: str, options: dict[str, Any], *, timeout: float) -> list[str]:
        self._check_alive()
        assert self._runner is not None
        req_id = f"c{next(self._request_ids)}"
        send, receive = trio.open_memory_channel[list[str]](1)
        self._completions[req_id] = send
        await self._runner.send(
            {"op": "complete", "req_id": req_id, "code": code, "options": options}
        )
        with trio.move_on_after(timeout):
            async for items in receive:
                return items
        self._completions.pop(req_id, None)
        return []


def _exit_code(message: dict[str, Any]) -> int:
    value = message.get("exit_code")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return -1
    return int(value)
