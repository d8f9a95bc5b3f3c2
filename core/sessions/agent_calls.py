"""The calls the manager makes of a session's agent, and what their failures mean to
the client (spec 1.7): each refusal, timeout or lost link becomes the problem the API
answers with. The calls are built here from the session and the request, but for the
session-file calls (`crucible.sessions.files`, `crucible.api.kernel_files`) and
``execute`` (`crucible.sessions.lifecycle`, which knows the flush interval).

Adding a field to a call: its class in `crucible.protocol.calls` (or `file_calls`), the
place that builds it, the agent's handler, and the protocol version.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import attrs
import trio

from crucible import errors
from crucible.cluster.directory import AgentDirectory
from crucible.cluster.links import AgentCallFailed, AgentMessageTooLarge, AgentUnreachable
from crucible.config import SessionsConfig
from crucible.protocol.calls import (
    AgentCall,
    CancelRun,
    Complete,
    CreateKernel,
    DestroyKernel,
    Execute,
    ExecutionResult,
    GetLogs,
    Interrupt,
    KernelCreated,
    KernelRestarted,
    Mount,
    RestartKernel,
    ServiceStarted,
    StartService,
)
from crucible.protocol.failures import ErrorKind
from crucible.protocol.stats import KernelStats
from crucible.sessions.endings import EndRecorder
from crucible.sessions.model import Session
from crucible.sessions.resources import Resources

log = logging.getLogger(__name__)

R = TypeVar("R")


def agent_error(exc_class: type[errors.AgentError], exc: Exception) -> errors.ProblemError:
    """The problem a failed call `exc` is to the client; `exc_class` says what failed."""
    if isinstance(exc, AgentMessageTooLarge):
        # Too large to carry to the agent: the request's fault, and nothing ran.
        return errors.RequestTooLarge(f"The request is too large for the agent link: {exc.title}.")
    if isinstance(exc, AgentCallFailed):
        return exc_class(
            exc.title,
            agent_error_title=exc.title,
            exception=exc.exception,
            agent_error_type=exc.kind.value if exc.kind.startswith("agent-") else None,
        )
    if isinstance(exc, trio.TooSlowError):
        return exc_class(
            "The agent did not answer in time.",
            agent_error_type="agent-timeout",
            agent_error_title="timeout",
        )
    return exc_class("The agent is unreachable.", agent_error_title=str(exc))


@attrs.frozen
class AgentCalls:
    agents: AgentDirectory
    #: A kernel its agent no longer has, or whose creation failed, ends here.
    endings: EndRecorder
    #: ``[sessions]``: the timeouts of the calls.
    settings: SessionsConfig

    async def call(
        self,
        session: Session,
        call: AgentCall[R],
        failure: type[errors.AgentError],
        *,
        timeout: float | None = None,
    ) -> R:
        """Make `call` (about `session`'s kernel) of the session's agent."""
        if session.agent_id is None or session.status != "RUNNING":
            raise errors.KernelNotFound(f"Session {session.token!r} is {session.status.lower()}.")
        try:
            timeout = self.settings.agent_call_timeout if timeout is None else timeout
            return await self.agents.link(session.agent_id).call(call, timeout=timeout)
        except AgentCallFailed as exc:
            if exc.kind == ErrorKind.KERNEL_NOT_FOUND:
                await self.endings.record(session.id, "kernel-lost")
                raise errors.KernelNotFound(f"Session {session.token!r} has ended.") from exc
            raise agent_error(failure, exc) from exc
        except (AgentUnreachable, trio.TooSlowError) as exc:
            raise agent_error(failure, exc) from exc

    # -- a kernel's life ------------------------------------------------------------------

    async def create_kernel(
        self,
        session: Session,
        *,
        resources: Resources,
        environ: dict[str, str],
        mounts: tuple[Mount, ...],
    ) -> KernelCreated:
        """Create `session`'s kernel on the agent placement chose; a failure ends the
        session (``ERROR``) before it is raised as ``kernel-creation-failed``."""
        assert session.agent_id is not None
        try:
            link = self.agents.link(session.agent_id)
            return await link.call(
                CreateKernel(
                    kernel_id=session.id,
                    image=session.image,
                    # What placement reserved: the request capped by the resource policy.
                    cpu=float(session.occupied_slots.get("cpu", resources.cpu)),
                    mem=int(session.occupied_slots.get("mem", resources.mem)),
                    environ=environ,
                    mounts=mounts,
                    access_key=session.access_key,
                ),
                timeout=self.settings.create_timeout,
            )
        except (AgentUnreachable, AgentCallFailed, trio.TooSlowError) as exc:
            log.warning(
                "creating session %s on %s failed: %s", session.token, session.agent_id, exc
            )
            await self.endings.record(session.id, "creation-failed", status="ERROR")
            raise agent_error(errors.KernelCreationFailed, exc) from exc

    async def restart_kernel(self, session: Session) -> KernelRestarted:
        return await self.call(
            session,
            RestartKernel(session.id),
            errors.KernelRestartFailed,
            timeout=self.settings.create_timeout,
        )

    async def destroy_kernel(self, session: Session, reason: str) -> KernelStats | None:
        """Destroy `session`'s kernel; its last stats, None when the agent had none or
        could not be reached (it removes kernels nobody owns when it returns)."""
        if session.agent_id is None:
            return None
        try:
            with trio.CancelScope(shield=True):
                destroyed = await self.agents.link(session.agent_id).call(
                    DestroyKernel(session.id, reason), timeout=self.settings.agent_call_timeout
                )
        except (AgentUnreachable, trio.TooSlowError) as exc:
            log.warning(
                "agent %s unreachable while destroying %s: %s", session.agent_id, session.token, exc
            )
            return None
        except AgentCallFailed as exc:
            raise agent_error(errors.KernelDestructionFailed, exc) from exc
        return destroyed.stats

    async def remove_orphan(self, agent_id: str, kernel_id: str) -> None:
        """Destroy a kernel `agent_id` runs that no session owns (best effort)."""
        try:
            await self.agents.link(agent_id).call(
                DestroyKernel(kernel_id, "orphan"), timeout=self.settings.agent_call_timeout
            )
        except (AgentUnreachable, AgentCallFailed, trio.TooSlowError) as exc:
            log.warning("could not remove orphan kernel %s: %s", kernel_id, exc)

    # -- runs -----------------------------------------------------------------------------

    async def execute(self, session: Session, run: Execute) -> ExecutionResult:
        """Make the execute call `run` (spec 4.6, built by `SessionLifecycle.execute`);
        a caller that goes away cancels the run."""
        try:
            return await self.call(
                session,
                run,
                errors.KernelExecutionFailed,
                timeout=run.flush_interval + self.settings.execute_call_margin,
            )
        except trio.Cancelled:
            # The caller went away while waiting for this run (the client disconnected):
            # nobody will collect it, so it must not go on running or wait its turn.
            with trio.CancelScope(shield=True):
                await self.cancel_run(session, run.run_id)
            raise
        except errors.KernelExecutionFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, AgentCallFailed) and cause.kind == ErrorKind.QUEUE_FULL:
                raise errors.ExecutionQueueFull(
                    f"Session {session.token!r}: {cause.title}."
                ) from cause
            raise

    async def cancel_run(self, session: Session, run_id: str) -> None:
        """Stop run `run_id` of `session`, whose client went away (agent ``cancel_run``).

        Best effort: a session that ended or an agent that does not answer has nothing
        left to stop (an agent that is back reconciles its kernels anyway).
        """
        try:
            await self.call(
                session,
                CancelRun(session.id, run_id),
                errors.KernelExecutionFailed,
                timeout=self.settings.cancel_timeout,
            )
        except errors.ProblemError as exc:
            log.info("could not cancel run %s of %s: %s", run_id, session.token, exc)

    async def interrupt(self, session: Session) -> None:
        await self.call(session, Interrupt(session.id), errors.KernelExecutionFailed)

    async def complete(self, session: Session, code: str, options: dict[str, Any]) -> list[str]:
        completions = await self.call(
            session, Complete(session.id, code, options), errors.KernelExecutionFailed
        )
        return list(completions.items)

    async def logs(self, session: Session) -> str:
        logs = await self.call(session, GetLogs(session.id), errors.KernelExecutionFailed)
        return logs.logs

    async def start_service(self, session: Session, name: str) -> ServiceStarted:
        """Start `session`'s app `name` unless it runs (agent ``start_service``); answers
        once it accepts. An app the image does not declare is a 404 ``app-not-found``;
        one that does not come up a 500 ``service-start-failed`` saying why."""
        try:
            return await self.call(
                session,
                StartService(session.id, name),
                errors.ServiceStartFailed,
                timeout=self.settings.service_call_timeout,
            )
        except errors.ServiceStartFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, AgentCallFailed) and cause.kind == ErrorKind.APP_NOT_FOUND:
                raise errors.AppNotFound(cause.title) from cause
            raise

    # -- session files (spec 4.9-4.11) ----------------------------------------------------

    async def file_call(self, session: Session, call: AgentCall[R], *, bad_path_status: int) -> R:
        """Relay a file call about `session`'s kernel (`crucible.protocol.file_calls`).

        The agent's refusals become client errors: a bad or missing path is a 400 or a
        404 (`bad_path_status`; uploads answer 400, listings and downloads 404), a
        limit a 400; anything else stays a ``kernel-execution-failed``.
        """
        try:
            return await self.call(session, call, errors.KernelExecutionFailed)
        except errors.KernelExecutionFailed as exc:
            cause = exc.__cause__
            if not isinstance(cause, AgentCallFailed):
                raise
            kind = cause.kind
            if kind == ErrorKind.TOO_LARGE or (
                kind == ErrorKind.INVALID_PATH and bad_path_status == 400
            ):
                raise errors.InvalidAPIParameters(cause.title) from cause
            if kind in (ErrorKind.INVALID_PATH, ErrorKind.FILE_NOT_FOUND):
                raise errors.GenericNotFound(cause.title) from cause
            raise
