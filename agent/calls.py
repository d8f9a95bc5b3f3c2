"""The calls managers make on a live kernel, and the errors every call may answer.

A handler takes its call's class from `crucible.protocol` and returns its reply class;
what it refuses or cannot carry out is an `AgentCallError`, whose `kind` goes into the
error reply (the manager maps kinds to statuses). Creating, restarting and destroying
kernels are `crucible.agent.lifecycle`'s calls.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from crucible.agent.docker.driver import DockerDriver
from crucible.agent.execution.queue import QueueFull
from crucible.agent.files.paths import FileOpError
from crucible.agent.files.service import FileService
from crucible.agent.kernel.services import ServiceFailed, UnknownService
from crucible.agent.kernel.supervisor import KernelGone, KernelSupervisor
from crucible.config import AgentConfig
from crucible.protocol.calls import (
    CallTable,
    CancelRun,
    Complete,
    Completions,
    Done,
    Execute,
    ExecutionResult,
    GetLogs,
    Interrupt,
    KernelList,
    KernelLogs,
    ListKernels,
    RunCancelled,
    ServiceStarted,
    StartService,
)
from crucible.protocol.failures import ErrorKind
from crucible.protocol.file_calls import FILE_CALLS, FileCall


class AgentCallError(Exception):
    """A call the agent refuses or cannot carry out; `kind` goes into the error reply."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.AGENT_FAILURE) -> None:
        super().__init__(message)
        self.kind = kind


def live_kernel(kernels: Mapping[str, KernelSupervisor], kernel_id: str) -> KernelSupervisor:
    """The supervisor of `kernel_id`, unless it is not here or has ended."""
    supervisor = kernels.get(kernel_id)
    if supervisor is None or supervisor.terminated_reason is not None:
        raise AgentCallError(f"no kernel {kernel_id} on this agent", ErrorKind.KERNEL_NOT_FOUND)
    return supervisor


@attrs.define(eq=False)
class KernelCalls:
    """Runs, completions, logs and session files of the agent's live kernels."""

    _config: AgentConfig
    _driver: DockerDriver
    _kernels: Mapping[str, KernelSupervisor]
    _files: FileService

    def add_to(self, table: CallTable) -> None:
        table.add(Execute, self.execute)
        table.add(Interrupt, self.interrupt)
        table.add(CancelRun, self.cancel_run)
        table.add(Complete, self.complete)
        table.add(GetLogs, self.logs)
        table.add(ListKernels, self.list_kernels)
        table.add(StartService, self.start_service)
        for kind in FILE_CALLS:
            table.add(kind, self.file_call)

    async def execute(self, call: Execute) -> ExecutionResult:
        supervisor = live_kernel(self._kernels, call.kernel_id)
        try:
            return await supervisor.execute(
                call.run_id, call.mode, call.code, call.options, flush_interval=call.flush_interval
            )
        except KernelGone as exc:
            raise AgentCallError(f"the kernel is gone: {exc}", ErrorKind.KERNEL_NOT_FOUND) from exc
        except QueueFull as exc:
            raise AgentCallError(str(exc), ErrorKind.QUEUE_FULL) from exc

    async def cancel_run(self, call: CancelRun) -> RunCancelled:
        """Stop a run whose client went away (queued: never starts; running: interrupted,
        then killed after ``agent.run_cancel_grace``)."""
        supervisor = live_kernel(self._kernels, call.kernel_id)
        return RunCancelled(await supervisor.cancel_run(call.run_id))

    async def interrupt(self, call: Interrupt) -> Done:
        await live_kernel(self._kernels, call.kernel_id).interrupt()
        return Done()

    async def complete(self, call: Complete) -> Completions:
        supervisor = live_kernel(self._kernels, call.kernel_id)
        timeout = self._config.complete_timeout
        items = await supervisor.complete(call.code, call.options, timeout=timeout)
        return Completions(tuple(items))

    async def start_service(self, call: StartService) -> ServiceStarted:
        """Start an app of the kernel (spec 9) unless it runs; answer once it accepts."""
        supervisor = live_kernel(self._kernels, call.kernel_id)
        try:
            port, started = await supervisor.start_service(
                call.name, timeout=self._config.service_start_timeout
            )
        except UnknownService as exc:
            raise AgentCallError(str(exc), ErrorKind.APP_NOT_FOUND) from exc
        except ServiceFailed as exc:
            raise AgentCallError(str(exc), ErrorKind.SERVICE_START_FAILED) from exc
        except KernelGone as exc:
            raise AgentCallError(f"the kernel is gone: {exc}", ErrorKind.KERNEL_NOT_FOUND) from exc
        return ServiceStarted(port, started)

    async def logs(self, call: GetLogs) -> KernelLogs:
        supervisor = live_kernel(self._kernels, call.kernel_id)
        logs = await self._driver.logs(
            supervisor.container_id, max_bytes=self._config.logs_max_bytes
        )
        return KernelLogs(logs)

    async def list_kernels(self, call: ListKernels) -> KernelList:
        return KernelList(tuple(sorted(self._kernels)))

    async def file_call(self, call: FileCall) -> object:
        """Session files (spec 4.9-4.11); see crucible.agent.files."""
        supervisor = live_kernel(self._kernels, call.kernel_id)
        self._files.forget(set(self._kernels))
        try:
            info = supervisor.info
            return await self._files.call(info.kernel_id, info.kernel_dir, call)
        except FileOpError as exc:
            raise AgentCallError(str(exc), ErrorKind(exc.kind)) from exc
