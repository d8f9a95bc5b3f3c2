"""One kernel: its container, its runner connection and its runs.

A `KernelSupervisor` lives in its own task in the agent's nursery. Cancelling that
task (agent shutdown) leaves the container running so a restarted agent can recover
it; `mark_terminated` (and the agent's removal of the container) is what ends a kernel
for good.

Its runs start one at a time within the execution limits (`crucible.agent.kernel.
dispatch`); what the runner says about them is read by `crucible.agent.kernel.
runner_messages`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from crucible.agent.cgroups import oom_kill_count
from crucible.agent.execution.limits import ExecLimits, FairSlots
from crucible.agent.execution.output import (
    Handover,
    Run,
    RunState,
    SessionOutput,
    execution_result,
)
from crucible.agent.kernel.dispatch import CANCELLED_EXIT_CODE, CANCELLED_NOTE, RunDispatcher
from crucible.agent.kernel.info import KernelInfo
from crucible.agent.kernel.runner_link import RunnerConnection, RunnerGone, RunnerSource
from crucible.agent.kernel.runner_messages import (
    CompletionRequests,
    ReportedRun,
    RunnerMessages,
    reported_run,
)
from crucible.agent.kernel.services import ServiceRequests
from crucible.agent.kernel.streams import KernelStreams
from crucible.config import StreamsConfig
from crucible.kernels.service_ports import ServicePort
from crucible.protocol.calls import ExecutionResult
from crucible.protocol.stats import KernelStats

log = logging.getLogger(__name__)

#: Exit code reported when a run ends because its kernel died under it.
KERNEL_DIED_EXIT_CODE = 130

TerminationCallback = Callable[["KernelSupervisor", str], Awaitable[None]]


class KernelGone(Exception):
    """The kernel was terminated; further calls on it fail."""


@attrs.define(eq=False)
class KernelSupervisor:
    """Kernel `info` in container `container_id`, whose runner dials `listener` within
    `connect_timeout` seconds; `on_terminated(self, reason)` once it has ended."""

    info: KernelInfo
    container_id: str
    _on_terminated: TerminationCallback = attrs.field(kw_only=True)
    #: This session's share of the agent's memory for uncollected output.
    output: SessionOutput = attrs.field(kw_only=True)
    _listener: RunnerSource = attrs.field(kw_only=True)
    _connect_timeout: float = attrs.field(kw_only=True)
    _limits: ExecLimits | None = attrs.field(default=None, kw_only=True)
    _slots: FairSlots | None = attrs.field(default=None, kw_only=True)
    _stream_config: StreamsConfig = attrs.field(factory=StreamsConfig, kw_only=True)
    terminated_reason: str | None = attrs.field(default=None, init=False)
    #: Set once the runner dialled in.
    connected: trio.Event = attrs.field(factory=trio.Event, init=False)
    last_stats: KernelStats | None = attrs.field(default=None, init=False)
    #: What the container printed when it died before its runner answered.
    startup_output: str = attrs.field(default="", init=False)
    _runner: RunnerConnection | None = attrs.field(default=None, init=False)
    _runs: dict[str, Run] = attrs.field(factory=dict, init=False)
    _completions: CompletionRequests = attrs.field(factory=CompletionRequests, init=False)
    _services: ServiceRequests = attrs.field(factory=ServiceRequests, init=False)
    _dispatch: RunDispatcher = attrs.field(init=False)
    _messages: RunnerMessages = attrs.field(init=False)
    #: Its terminal and tunnel connections (`crucible.agent.kernel.streams`).
    streams: KernelStreams = attrs.field(init=False)
    _cancel_scope: trio.CancelScope | None = attrs.field(default=None, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)

    @_dispatch.default
    def _dispatcher(self) -> RunDispatcher:
        return RunDispatcher(
            self.info.kernel_id,
            exec_timeout=self.info.exec_timeout,
            access_key=self.info.access_key,
            limits=self._limits or ExecLimits.defaults(),
            slots=self._slots or FairSlots.unlimited(),
            end_kernel=self._end_kernel,
        )

    @streams.default
    def _kernel_streams(self) -> KernelStreams:
        config = self._stream_config
        return KernelStreams(
            self.info.kernel_id,
            max_streams=config.max_per_kernel,
            window=config.window_bytes,
            chunk=config.chunk_bytes,
        )

    @_messages.default
    def _message_reader(self) -> RunnerMessages:
        return RunnerMessages(
            self.info.kernel_id,
            self._runs,
            self._completions,
            on_finished=self._run_finished,
            services=self._services,
        )

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
            self._dispatch.connected(self._runner)
            self.streams.connected(self._runner.send)
            adopted = self._adopt(reported_run(hello))
            self.connected.set()
            task_status.started()
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._dispatch.run, nursery.cancel_scope, adopted)
                    await self._pump_runner()
                    nursery.cancel_scope.cancel()
            finally:
                self.streams.close_all("the kernel's runner is gone")
                with trio.CancelScope(shield=True):
                    await self._runner.aclose()
            # The socket closed: the container is dead or dying.
            await self._died("self-terminated")

    def _adopt(self, reported: ReportedRun | None) -> tuple[Run, float] | None:
        """Take over the run the runner reports in its ``hello`` (this agent restarted
        while it ran): its output keeps flowing to whoever continues it, and it stays
        held to its time limit. Returns the run and its elapsed seconds, if it still
        runs."""
        if reported is None or reported.run_id in self._runs:
            return None
        run = Run(reported.run_id, reported.mode, "", {}, self.output)
        run.state = RunState.RUNNING
        self._runs[run.run_id] = run
        log.info("kernel %s: adopted run %s from the runner", self.info.kernel_id, run.run_id)
        if reported.finished:
            return None  # its end is on the way; nothing left to limit
        self._dispatch.adopt(run)
        return run, reported.elapsed

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

    async def _end_kernel(self, reason: str) -> None:
        self.mark_terminated(reason)
        with trio.CancelScope(shield=True):
            await self._on_terminated(self, reason)

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
                if timeout and run is self._dispatch.current:
                    run.hand_over(Handover("exec-timeout"))
                else:
                    run.hand_over(Handover("finished", KERNEL_DIED_EXIT_CODE))
        self._dispatch.clear()
        self._completions.close()
        self.streams.close_all(f"the session ended ({self.terminated_reason or 'terminated'})")
        self._services.close()

    # -- runner messages ------------------------------------------------------------------

    async def _pump_runner(self) -> None:
        assert self._runner is not None
        while True:
            try:
                message = await self._runner.receive()
            except RunnerGone as exc:
                log.info("kernel %s: runner gone (%s)", self.info.kernel_id, exc)
                return
            op = message.get("op")
            if isinstance(op, str) and (op.startswith("stream-") or op == "service-started"):
                self.streams.handle(message)
            else:
                self._messages.handle(message)

    def _run_finished(self, run: Run, exit_code: int) -> None:
        self._dispatch.finished(run)
        if (exit_code < 0 or exit_code >= 128) and self._nursery is not None:
            # Killed by a signal: if that was the OOM killer, the session ends.
            self._nursery.start_soon(self._end_if_oom_killed)

    # -- calls ----------------------------------------------------------------------------

    @property
    def queued_runs(self) -> int:
        """Runs waiting to start (not counting the one executing)."""
        return self._dispatch.queued

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
                if self._dispatch.was_cancelled(run_id):
                    cancelled = Handover("finished", CANCELLED_EXIT_CODE)
                    return execution_result(run_id, cancelled, [["stderr", CANCELLED_NOTE]])
                run = Run(run_id, mode, code, options, self.output)
                self._dispatch.submit(run)  # QueueFull: refused, nothing kept
                self._runs[run_id] = run
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

    async def cancel_run(self, run_id: str) -> str:
        """Stop run `run_id`, whose client went away; returns what became of it
        (`RunDispatcher.cancel`), or ``unknown``: not here (yet: an execute call that
        arrives later for it finishes at once)."""
        run = self._runs.get(run_id)
        if run is None:
            self._dispatch.remember_cancel(run_id)
            return "unknown"
        return await self._dispatch.cancel(run)

    async def interrupt(self) -> None:
        self._check_alive()
        assert self._runner is not None
        await self._runner.send({"op": "interrupt"})

    async def complete(self, code: str, options: dict[str, Any], *, timeout: float) -> list[str]:
        self._check_alive()
        assert self._runner is not None
        return await self._completions.request(self._runner.send, code, options, timeout=timeout)

    async def start_service(self, name: str, *, timeout: float) -> tuple[ServicePort, bool]:
        """Start the kernel's app `name` unless it runs; once it accepts, its port and
        whether this call started it (`crucible.agent.kernel.services`)."""
        self._check_alive()
        assert self._runner is not None
        return await self._services.start(
            self._runner.send, self.info.service_ports, name, timeout=timeout
        )
