"""The calls a manager makes of an agent about kernels and runs, and their replies.

Each call is a frozen attrs class registered under its wire name with `agent_call`;
its base ``AgentCall[Reply]`` names the class of its reply, so the manager's
``await link.call(CreateKernel(...))`` is typed ``KernelCreated``. Session files have
their calls beside these (`crucible.protocol.file_calls`). Adding a field to a call
is adding it here, filling it in where the manager builds the call, reading it in the
agent's handler, and bumping `crucible.protocol.version.VERSION`.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

import attrs

from crucible.kernels.service_ports import ServicePort
from crucible.protocol.stats import KernelStats

R = TypeVar("R")
C = TypeVar("C", bound="AgentCall[Any]")

#: How an execute call treats its run (spec 4.6).
ExecuteMode = Literal["query", "batch", "continue", "input"]


class AgentCall(Generic[R]):
    """The base of every call; `R` is the class of its reply."""

    __slots__ = ()
    #: The wire name (``"method"`` of the call envelope), set by `agent_call`.
    method: ClassVar[str]
    reply: ClassVar[type]


#: Every call class by its wire name.
CALLS: dict[str, type[AgentCall[Any]]] = {}


def agent_call(method: str) -> Callable[[type[C]], type[C]]:
    """Register a call class under `method`; its reply class is read from its base."""

    def register(cls: type[C]) -> type[C]:
        bases = [b for b in getattr(cls, "__orig_bases__", ()) if typing.get_origin(b) is AgentCall]
        (reply,) = typing.get_args(bases[0])
        if method in CALLS or not attrs.has(reply):
            raise TypeError(f"{cls.__name__}: {method!r} taken, or {reply!r} no attrs class")
        cls.method = method
        cls.reply = reply
        CALLS[method] = cls
        return cls

    return register


def reply_type(call: AgentCall[R]) -> type[R]:
    return cast("type[R]", type(call).reply)


class CallTable:
    """What an agent answers: one handler per call class (``add(CreateKernel, f)``)."""

    def __init__(self) -> None:
        self._handlers: dict[type[AgentCall[Any]], Callable[[Any], Awaitable[object]]] = {}

    def add(self, kind: type[C], handler: Callable[[C], Awaitable[object]]) -> None:
        self._handlers[kind] = handler

    def handler(self, call: C) -> Callable[[C], Awaitable[object]] | None:
        return self._handlers.get(type(call))


# -- replies --------------------------------------------------------------------------------


@attrs.frozen
class Done:
    """The reply of a call that has nothing to say but that it worked."""


@attrs.frozen
class KernelCreated:
    container_id: str
    #: The apps the kernel's image declares (spec 9), the session's ``servicePorts``.
    service_ports: tuple[ServicePort, ...] = ()


@attrs.frozen
class KernelDestroyed:
    #: The kernel's last statistics; None when it was not there.
    stats: KernelStats | None


@attrs.frozen
class KernelRestarted:
    container_id: str


@attrs.frozen
class ExecutionResult:
    """One step of a run: the ExecutionResult object of spec 4.6."""

    run_id: str
    #: ``continued``, ``waiting-input``, ``clean-finished``, ``build-finished``,
    #: ``finished`` or ``exec-timeout`` (crucible.agent.execution.output).
    status: str
    exit_code: int | None
    #: Console items as the runner made them: ``[kind, data]``, data free-form JSON.
    console: list[list[Any]]
    #: Batch options or ``{"is_password": ...}`` with ``waiting-input``: free-form.
    options: dict[str, Any] | None
    files: tuple[str, ...] = ()

    def as_api(self) -> dict[str, Any]:
        """The object as the API hands it to clients (spec 4.6 spells it camelCase)."""
        return {
            "runId": self.run_id,
            "status": self.status,
            "exitCode": self.exit_code,
            "console": self.console,
            "options": self.options,
            "files": list(self.files),
        }


@attrs.frozen
class RunCancelled:
    #: ``dequeued``, ``interrupting``, ``finished`` or ``unknown`` (crucible.agent.kernel.dispatch).
    state: str


@attrs.frozen
class Completions:
    items: tuple[str, ...]


@attrs.frozen
class KernelLogs:
    logs: str


@attrs.frozen
class KernelList:
    kernel_ids: tuple[str, ...]


# -- calls ----------------------------------------------------------------------------------


@attrs.frozen
class Mount:
    """A vfolder to bind into the kernel (spec 4.2 ``mounts``)."""

    source: str  # the host directory
    target: str  # one level under /home/work
    read_only: bool


@agent_call("create_kernel")
@attrs.frozen
class CreateKernel(AgentCall[KernelCreated]):
    kernel_id: str
    image: str
    #: What placement reserved: the request capped by the resource policy.
    cpu: float
    mem: int
    environ: dict[str, str]
    mounts: tuple[Mount, ...]
    #: The owner's: the agent shares its execution slots fairly between access keys.
    access_key: str


@agent_call("destroy_kernel")
@attrs.frozen
class DestroyKernel(AgentCall[KernelDestroyed]):
    kernel_id: str
    reason: str


@agent_call("restart_kernel")
@attrs.frozen
class RestartKernel(AgentCall[KernelRestarted]):
    kernel_id: str


@agent_call("execute")
@attrs.frozen
class Execute(AgentCall[ExecutionResult]):
    """Start (``query``, ``batch``), continue or answer input for run `run_id`; the
    reply comes with the next handover or after `flush_interval` seconds."""

    kernel_id: str
    run_id: str
    mode: ExecuteMode
    code: str
    options: dict[str, Any]  # batch options: free-form
    flush_interval: float


@agent_call("cancel_run")
@attrs.frozen
class CancelRun(AgentCall[RunCancelled]):
    """Stop a run whose client went away: queued, it never starts; running, it is
    interrupted, then killed after ``agent.run_cancel_grace``."""

    kernel_id: str
    run_id: str


@agent_call("interrupt")
@attrs.frozen
class Interrupt(AgentCall[Done]):
    """Interrupt whatever run executes (the API's ``/interrupt``)."""

    kernel_id: str


@agent_call("complete")
@attrs.frozen
class Complete(AgentCall[Completions]):
    kernel_id: str
    code: str
    options: dict[str, Any]  # completion options: free-form


@agent_call("logs")
@attrs.frozen
class GetLogs(AgentCall[KernelLogs]):
    kernel_id: str


@agent_call("list_kernels")
@attrs.frozen
class ListKernels(AgentCall[KernelList]):
    pass


@attrs.frozen
class ServiceStarted:
    """The app accepts connections on ``127.0.0.1:service.port`` inside the container."""

    service: ServicePort
    #: True when this call started it (or joined its start); false: it was running.
    started: bool


@agent_call("start_service")
@attrs.frozen
class StartService(AgentCall[ServiceStarted]):
    """Start the kernel's app `name` (spec 9 service ports) unless it runs, and answer
    once it accepts, within ``agent.service_start_timeout``. Error kinds:
    ``app-not-found`` (the image declares no such app, or it is a ``pty`` one),
    ``service-start-failed`` (it exited, or did not accept in time: it is then stopped,
    and the next call starts it afresh), ``kernel-not-found``."""

    kernel_id: str
    name: str
