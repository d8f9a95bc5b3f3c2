"""One kernel: its container, its runner connection and its queue of runs.

A `KernelSupervisor` lives in its own task in the agent's nursery. Cancelling that
task (agent shutdown) leaves the container running so a restarted agent can recover
it; `terminate()` is what removes a kernel for good.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from crucible.agent.cgroups import oom_kill_count
from crucible.agent.runner_link import RunnerConnection, RunnerGone
from crucible.agent.runs import Handover, Run, RunState, SessionOutput, execution_result

log = logging.getLogger(__name__)

#: How long a fresh container may take before its runner answers.
RUNNER_START_TIMEOUT = 30.0
#: Exit code reported when a run ends because its kernel died under it.
KERNEL_DIED_EXIT_CODE = 130

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

    @property
    def socket_path(self) -> Path:
        return self.kernel_dir / "ipc" / "runner.sock"


class KernelSupervisor:
    def __init__(
        self,
        info: KernelInfo,
        container_id: str,
        *,
        on_terminated: TerminationCallback,
        output: SessionOutput,
    ) -> None:
        self.info = info
        self.container_id = container_id
        self._on_terminated = on_terminated
        #: This session's share of the agent's memory for uncollected output.
        self.output = output
        self._runner: RunnerConnection | None = None
        self._runs: dict[str, Run] = {}
        self._queue: collections.deque[Run] = collections.deque()
        self._current: Run | None = None
        self._queue_changed = trio.Event()
        self._completions: dict[str, trio.MemorySendChannel[list[str]]] = {}
        self._request_ids = itertools.count(1)
        self._cancel_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.terminated_reason: str | None = None
        self.connected = trio.Event()
        self.last_stats: dict[str, int] | None = None
        #: What the container printed when it died before its runner answered.
        self.startup_output = ""

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect to the runner, then pump its messages and the run queue until the
        kernel dies or is terminated."""
        with trio.CancelScope() as scope:
            self._cancel_scope = scope
            try:
                self._runner, _ = await RunnerConnection.connect(
                    self.info.socket_path, timeout=RUNNER_START_TIMEOUT
                )
            except (trio.TooSlowError, RunnerGone, OSError):
                task_status.started()
                await self._died("runner-unreachable")
                return
            self.connected.set()
            task_status.started()
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._dispatch_runs, nursery.cancel_scope)
                    await self._pump_runner()
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await self._runner.aclose()
            # The socket closed: the container is dead or dying.
            await self._died("self-terminated")

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

    async def _dispatch_runs(self, supervision: trio.CancelScope) -> None:
        """Start queued runs one at a time (FIFO), each under the image's time limit.

        A runner that cannot be written to is as dead as one that hung up: end
        `supervision`, so the kernel is reported like any other death.
        """
        try:
            await self._dispatch_forever()
        except RunnerGone as exc:
            log.info("kernel %s: %s", self.info.kernel_id, exc)
            supervision.cancel()

    async def _dispatch_forever(self) -> None:
        assert self._runner is not None
        async with trio.open_nursery() as nursery:
            while True:
                while self._current is not None or not self._queue:
                    await self._queue_changed.wait()
                run = self._current = self._queue.popleft()
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
                nursery.start_soon(self._enforce_time_limit, run)

    async def _enforce_time_limit(self, run: Run) -> None:
        limit = self.info.exec_timeout
        if limit <= 0:
            return
        with trio.move_on_after(limit):
            await run.ended.wait()
        if not run.done:
            log.info("kernel %s: run %s exceeded %s s", self.info.kernel_id, run.run_id, limit)
            await self._died_by_timeout()

    async def _died_by_timeout(self) -> None:
        self.mark_terminated("exec-timeout")
        with trio.CancelScope(shield=True):
            await self._on_terminated(self, "exec-timeout")

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
    ) -> dict[str, Any]:
        """One execute call: start, continue or answer input for run `run_id`."""
        run = self._runs.get(run_id)
        if mode in ("query", "batch"):
            if run is None:
                self._check_alive()
                run = Run(run_id, mode, code, options, self.output)
                self._runs[run_id] = run
                self._queue.append(run)
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
        if run.done and result["status"] in ("finished", "exec-timeout"):
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
