"""The session lifecycle: create (get-or-create), execute, restart, destroy, reap.

State of record is the ``kernels`` table; the agents hold the containers. Placement
runs under a cluster-wide advisory lock, so two managers never overbook an agent or
a keypair's concurrency limit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from crucible import errors
from crucible.agents import (
    AgentCallFailed,
    AgentDirectory,
    AgentMessageTooLarge,
    AgentUnreachable,
)
from crucible.config import Config
from crucible.db.pool import Database, Executor
from crucible.db.queries import agents as agent_rows
from crucible.db.queries import kernels, locks, vfolders
from crucible.hookspecs.scheduler import AgentCapacity, PendingSession, Scheduler
from crucible.kernels.catalog import resolve_lang
from crucible.keypairs import Keypair
from crucible.protocol.calls import (
    AgentCall,
    CancelRun,
    Complete,
    CreateKernel,
    DestroyKernel,
    Execute,
    ExecuteMode,
    ExecutionResult,
    GetLogs,
    Interrupt,
    Mount,
    RestartKernel,
)
from crucible.protocol.failures import ErrorKind
from crucible.protocol.reports import AgentEvent, Heartbeat, KernelTerminated
from crucible.protocol.stats import KernelStats
from crucible.resource_policies import ResourcePolicyStore, cap, check_session_quota
from crucible.sessions.activity import ActivityRecorder
from crucible.sessions.events import SessionEvents
from crucible.sessions.model import Session
from crucible.sessions.requests import check_token
from crucible.sessions.resources import Resources, resolve_resources
from crucible.usage import record_memory_samples, record_session_end, record_session_start

if TYPE_CHECKING:
    from crucible.vfolders.service import VFolderService

log = logging.getLogger(__name__)

R = TypeVar("R")

#: pg_advisory_xact_lock key serialising placement decisions cluster-wide.
PLACEMENT_LOCK_ID = 0x43525550  # "CRUP"


def _agent_error(exc_class: type[errors.AgentError], exc: Exception) -> errors.ProblemError:
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


class SessionRegistry:
    def __init__(
        self,
        config: Config,
        db: Database,
        agents: AgentDirectory,
        scheduler: Scheduler,
        *,
        policies: ResourcePolicyStore,
        vfolders: VFolderService | None,
    ) -> None:
        self.config = config
        #: ``[sessions]``: the timeouts of calls to agents, the reaper's pace...
        self.settings = config.sessions
        self.db = db
        self.agents = agents
        self.scheduler = scheduler
        self.events = SessionEvents()
        #: Resolves ``config.mounts`` (None: no vfolders).
        self.vfolders = vfolders
        self.activity = ActivityRecorder(db, interval=config.sessions.activity_flush_interval)
        self.policies = policies
        agents.on_event = self._on_agent_event
        agents.on_heartbeat = self._on_heartbeat
        agents.on_lost = self._on_agents_lost

    # -- lookups --------------------------------------------------------------------------

    async def get_live(self, access_key: str, token: str) -> Session:
        # A token no session can have (a NUL, a slash, 500 characters) is the client's
        # mistake, said as such before the database sees it; a well-formed one is a 404.
        check_token(token, "kernelId")
        session = await kernels.live_session(self.db, access_key, token)
        if session is None:
            raise errors.KernelNotFound(f"No live session {token!r}.")
        return session

    async def count_live(self) -> int:
        return await kernels.count_live_sessions(self.db)

    async def image_catalog(self) -> list[tuple[str, dict[str, str]]]:
        catalog: dict[str, dict[str, str]] = {}
        for images in await agent_rows.alive_images(self.db):
            for image in images:
                catalog.setdefault(str(image["ref"]), dict(image.get("labels") or {}))
        return sorted(catalog.items())

    # -- create ---------------------------------------------------------------------------

    async def create(
        self,
        keypair: Keypair,
        token: str,
        lang: str,
        *,
        tag: str | None,
        environ: Mapping[str, str],
        mounts: Sequence[tuple[str, str]],
        creation_config: Mapping[str, Any],
    ) -> tuple[Session, bool]:
        """Get-or-create (spec 4.2); returns ``(session, created)``.

        The arguments are the request as the API edge checked it
        (`crucible.sessions.requests`, `crucible.vfolders.paths.parse_mounts`); the
        resource fields of `creation_config` are read here.
        """
        catalog = await self.image_catalog()
        image = resolve_lang(lang, catalog)  # UnknownLang is a 404 image-not-found
        labels = dict(catalog)[image]
        resources = resolve_resources(creation_config, labels, self.config.sessions)
        resolved_mounts = await self._resolve_mounts(keypair, token, mounts)
        session, created = await self._place(
            keypair, token, lang, image, tag, dict(environ), resources
        )
        if not created:
            if session.image != image:
                raise errors.KernelAlreadyExists(
                    f"Session {token!r} exists with image {session.lang!r}."
                )
            return session, False
        assert session.agent_id is not None
        if resolved_mounts:
            await self._attach_mounts(session, resolved_mounts)
        try:
            link = self.agents.link(session.agent_id)
            kernel = await link.call(
                CreateKernel(
                    kernel_id=session.id,
                    image=image,
                    # What placement reserved: the request capped by the resource policy.
                    cpu=float(session.occupied_slots.get("cpu", resources.cpu)),
                    mem=int(session.occupied_slots.get("mem", resources.mem)),
                    environ=dict(environ),
                    mounts=tuple(
                        Mount(m["source"], m["target"], m["read_only"]) for m in resolved_mounts
                    ),
                    access_key=keypair.access_key,
                ),
                timeout=self.settings.create_timeout,
            )
        except (AgentUnreachable, AgentCallFailed, trio.TooSlowError) as exc:
            log.warning("creating session %s on %s failed: %s", token, session.agent_id, exc)
            await self._set_terminated(session.id, "creation-failed", status="ERROR")
            raise _agent_error(errors.KernelCreationFailed, exc) from exc
        except trio.Cancelled:
            # The caller went away mid-create: nothing may stay half-made. A kernel the
            # agent finishes creating anyway is removed at its next heartbeat.
            grace = self.settings.agent_call_timeout
            with trio.CancelScope(shield=True), trio.move_on_after(grace):
                await self.destroy(session, "creation-cancelled")
            raise
        running = await kernels.mark_running(self.db, session.id, kernel.container_id)
        if running is None:  # destroyed while it was being created
            raise errors.KernelCreationFailed("The session was terminated while starting.")
        return running, True

    async def _resolve_mounts(
        self, keypair: Keypair, token: str, requested: Sequence[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """Check ``config.mounts`` before anything is created (a bad one is a 404).

        A request that will reuse a live session ignores its config (spec 4.2).
        """
        if not requested or self.vfolders is None:
            return []
        if await kernels.live_session(self.db, keypair.access_key, token) is not None:
            return []
        return await self.vfolders.resolve_mounts(keypair, requested)

    async def _attach_mounts(self, session: Session, mounts: list[dict[str, Any]]) -> None:
        """Record the mounts on the kernel row, unless a folder was deleted meanwhile.

        The folder rows are share-locked: a concurrent folder delete (which locks them
        for update, then looks for live sessions mounting them) either sees these
        mounts and refuses, or has removed the folder, and the session fails here.
        """
        ids = [uuid.UUID(m["id"]) for m in mounts]
        async with self.db.transaction() as conn:
            if len(await vfolders.lock_existing(conn, ids)) == len(set(ids)):
                await kernels.set_mounts(conn, session.id, mounts)
                return
        await self._set_terminated(session.id, "vfolder-deleted", status="ERROR")
        raise errors.VFolderNotFound("A folder to mount was deleted meanwhile.")

    async def _place(
        self,
        keypair: Keypair,
        token: str,
        lang: str,
        image: str,
        tag: str | None,
        environ: dict[str, str],
        resources: Resources,
    ) -> tuple[Session, bool]:
        async with self.db.transaction() as conn:
            await locks.hold(conn, PLACEMENT_LOCK_ID)
            existing = await kernels.live_session(conn, keypair.access_key, token)
            if existing is not None:
                return existing, False
            # The keypair's resource policy caps this session and the keypair's total.
            policy = await self.policies.for_keypair(conn, keypair.access_key)
            resources = cap(policy, resources)
            load = await kernels.keypair_load(conn, keypair.access_key)
            check_session_quota(
                policy,
                concurrency_limit=keypair.concurrency_limit,
                live=load.sessions,
                used_cpu=load.cpu,
                used_mem=load.mem,
                wanted=resources,
            )
            capacities = await self._capacities(conn, image)
            pending = PendingSession(
                kernel_id=token,
                access_key=keypair.access_key,
                requested=resources.slots(),
                requested_at=datetime.now(UTC),
            )
            choice = self.scheduler.pick_agent(pending, capacities)
            if choice is None:
                raise errors.InstanceNotAvailable(
                    f"No agent has {resources.cpu} free cores and {resources.mem} free bytes."
                )
            session = await kernels.insert_session(
                conn,
                token=token,
                access_key=keypair.access_key,
                agent_id=choice.agent_id,
                image=image,
                lang=lang,
                tag=tag,
                environ=environ,
                slots=resources.slots(),
            )
            await record_session_start(conn, keypair.access_key)
            return session, True

    async def _capacities(self, conn: Executor, image: str) -> list[AgentCapacity]:
        capacities = []
        for agent in await agent_rows.with_status(conn, "ALIVE"):
            if agent.id not in self.agents.links:
                continue  # this manager could not talk to it
            if image not in {i["ref"] for i in agent.images}:
                continue
            capacities.append(
                AgentCapacity(
                    agent_id=agent.id,
                    available={k: float(v) for k, v in agent.available_slots.items()},
                    occupied={"cpu": agent.used_cpu, "mem": agent.used_mem},
                )
            )
        return capacities

    # -- calls on a live session ----------------------------------------------------------

    async def _call(
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
                await self._set_terminated(session.id, "kernel-lost")
                raise errors.KernelNotFound(f"Session {session.token!r} has ended.") from exc
            raise _agent_error(failure, exc) from exc
        except (AgentUnreachable, trio.TooSlowError) as exc:
            raise _agent_error(failure, exc) from exc

    async def execute(
        self,
        session: Session,
        *,
        run_id: str,
        mode: ExecuteMode,
        code: str,
        options: dict[str, Any],
        flush_interval: float | None = None,
    ) -> ExecutionResult:
        flush = (
            flush_interval
            if flush_interval is not None
            else self.config.sessions.exec_flush_interval
        )
        self.activity.touch(session.id, session.access_key, execution=mode in ("query", "batch"))
        try:
            result = await self._call(
                session,
                Execute(session.id, run_id, mode, code, options, flush),
                errors.KernelExecutionFailed,
                timeout=flush + self.settings.execute_call_margin,
            )
        except trio.Cancelled:
            # The caller went away while waiting for this run (the client disconnected):
            # nobody will collect it, so it must not go on running or wait its turn.
            with trio.CancelScope(shield=True):
                await self.cancel_run(session, run_id)
            raise
        except errors.KernelExecutionFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, AgentCallFailed) and cause.kind == ErrorKind.QUEUE_FULL:
                raise errors.ExecutionQueueFull(
                    f"Session {session.token!r}: {cause.title}."
                ) from cause
            raise
        if result.status == "exec-timeout":
            # The 18.12 client re-sends on exec-timeout; ending the session stops it (spec 4.6).
            await self._set_terminated(session.id, "exec-timeout")
        return result

    async def cancel_run(self, session: Session, run_id: str) -> None:
        """Stop run `run_id` of `session`, whose client went away (agent ``cancel_run``).

        Best effort: a session that ended or an agent that does not answer has nothing
        left to stop (an agent that is back reconciles its kernels anyway).
        """
        try:
            await self._call(
                session,
                CancelRun(session.id, run_id),
                errors.KernelExecutionFailed,
                timeout=self.settings.cancel_timeout,
            )
        except errors.ProblemError as exc:
            log.info("could not cancel run %s of %s: %s", run_id, session.token, exc)

    async def interrupt(self, session: Session) -> None:
        self.activity.touch(session.id, session.access_key)
        await self._call(session, Interrupt(session.id), errors.KernelExecutionFailed)

    async def complete(self, session: Session, code: str, options: dict[str, Any]) -> list[str]:
        self.activity.touch(session.id, session.access_key)
        completions = await self._call(
            session, Complete(session.id, code, options), errors.KernelExecutionFailed
        )
        return list(completions.items)

    async def logs(self, session: Session) -> str:
        self.activity.touch(session.id, session.access_key)
        logs = await self._call(session, GetLogs(session.id), errors.KernelExecutionFailed)
        return logs.logs

    # -- session files (spec 4.9-4.11; the agent does the work, crucible.agent.files) ----

    async def file_call(self, session: Session, call: AgentCall[R], *, bad_path_status: int) -> R:
        """Relay a file call about `session`'s kernel (`crucible.protocol.file_calls`).

        The agent's refusals become client errors: a bad or missing path is a 400 or a
        404 (`bad_path_status`; uploads answer 400, listings and downloads 404), a
        limit a 400; anything else stays a ``kernel-execution-failed``.
        """
        self.activity.touch(session.id, session.access_key)
        try:
            return await self._call(session, call, errors.KernelExecutionFailed)
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

    async def restart(self, session: Session) -> None:
        self.activity.touch(session.id, session.access_key)
        await kernels.mark_restarting(self.db, session.id)
        try:
            restarted = await self._call(
                attrs.evolve(session, status="RUNNING"),
                RestartKernel(session.id),
                errors.KernelRestartFailed,
                timeout=self.settings.create_timeout,
            )
        except errors.KernelRestartFailed:
            await self._set_terminated(session.id, "restart-failed")
            raise
        await kernels.mark_restarted(self.db, session.id, restarted.container_id)
        self.events.publish(session.id, "restarted", "user-requested")

    # -- destroy --------------------------------------------------------------------------

    async def destroy(self, session: Session, reason: str = "user-requested") -> KernelStats | None:
        """End a session; returns its last stats. Never leaves it half-ended."""
        await kernels.mark_terminating(self.db, session.id)
        stats = session.last_stat
        if session.agent_id is not None:
            try:
                with trio.CancelScope(shield=True):
                    destroyed = await self.agents.link(session.agent_id).call(
                        DestroyKernel(session.id, reason), timeout=self.settings.agent_call_timeout
                    )
                stats = destroyed.stats or stats
            except (AgentUnreachable, trio.TooSlowError) as exc:
                # The agent reconciles when it returns: it removes kernels nobody owns.
                log.warning(
                    "agent %s unreachable while destroying %s: %s",
                    session.agent_id,
                    session.token,
                    exc,
                )
            except AgentCallFailed as exc:
                await self._set_terminated(session.id, reason, stats=stats)
                raise _agent_error(errors.KernelDestructionFailed, exc) from exc
        await self._set_terminated(session.id, reason, stats=stats)
        return stats

    async def destroy_all(self) -> int:
        sessions = await kernels.live_sessions(self.db)
        async with trio.open_nursery() as nursery:
            for session in sessions:
                nursery.start_soon(self._destroy_quietly, session, "force-killed")
        return len(sessions)

    async def _destroy_quietly(self, session: Session, reason: str) -> None:
        try:
            await self.destroy(session, reason)
        except errors.ProblemError as exc:
            log.warning("destroying %s failed: %s", session.token, exc)

    async def _set_terminated(
        self,
        session_id: str,
        reason: str,
        *,
        status: str = "TERMINATED",
        stats: KernelStats | None = None,
    ) -> None:
        ended = await kernels.mark_terminated(
            self.db,
            session_id,
            reason if status == "TERMINATED" else f"{status.lower()}: {reason}",
            stats,
        )
        if ended is not None:
            self.events.publish(session_id, "terminated", reason)
            if ended.last_stat is not None:
                await record_session_end(self.db, ended.access_key, ended.last_stat)

    # -- agent reports --------------------------------------------------------------------

    async def _on_agent_event(self, agent_id: str, event: AgentEvent) -> None:
        if isinstance(event, KernelTerminated):
            kernel_id = event.kernel_id
            reason = event.reason or "terminated"
            log.info("agent %s reports kernel %s ended: %s", agent_id, kernel_id, reason)
            try:
                await self._set_terminated(kernel_id, reason)
            except Exception:
                log.exception("could not record the end of kernel %s", kernel_id)

    async def _on_heartbeat(self, agent_id: str, heartbeat: Heartbeat) -> None:
        reported = {k.kernel_id: k.stats for k in heartbeat.kernels if k.kernel_id}
        known = {k.id: k for k in await kernels.placements_on_agent(self.db, agent_id, reported)}
        stat_updates = [
            (kid, stats)
            for kid, stats in reported.items()
            if stats is not None and kid in known and known[kid].status != "TERMINATED"
        ]
        if stat_updates:
            await kernels.set_stats(self.db, stat_updates)
            # One sample per live kernel per heartbeat: the daily average memory (usage).
            await record_memory_samples(
                self.db,
                [(known[kid].access_key, stats.mem_cur_bytes) for kid, stats in stat_updates],
            )
        # Kernels the agent runs but nobody wants any more: remove them.
        for kernel_id in reported:
            placed = known.get(kernel_id)
            if placed is None or placed.status == "TERMINATED":
                log.info("asking agent %s to remove orphan kernel %s", agent_id, kernel_id)
                await self._remove_orphan(agent_id, kernel_id)
        # Kernels we think run there but the agent does not have (after a grace period,
        # since a create may be in flight).
        now = datetime.now(UTC)
        grace = self.settings.missing_kernel_grace
        for kernel_id, placed in known.items():
            if (
                kernel_id not in reported
                and placed.status in ("RUNNING",)
                and (now - placed.created_at).total_seconds() > grace
            ):
                await self._set_terminated(kernel_id, "lost-by-agent")

    async def _remove_orphan(self, agent_id: str, kernel_id: str) -> None:
        try:
            await self.agents.link(agent_id).call(
                DestroyKernel(kernel_id, "orphan"), timeout=self.settings.agent_call_timeout
            )
        except (AgentUnreachable, AgentCallFailed, trio.TooSlowError) as exc:
            log.warning("could not remove orphan kernel %s: %s", kernel_id, exc)

    async def _on_agents_lost(self, agent_ids: list[str]) -> None:
        for kernel_id in await kernels.live_on_agents(self.db, agent_ids):
            await self._set_terminated(kernel_id, "agent-lost")

    # -- idle reaper ----------------------------------------------------------------------

    async def reap_idle(self) -> int:
        timeout = self.config.sessions.idle_timeout
        if timeout <= 0:
            return 0
        idle = await kernels.idle_sessions(self.db, timeout)
        for session in idle:
            log.info("reaping idle session %s", session.token)
            await self._destroy_quietly(session, "idle-timeout")
        return len(idle)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background duties: activity flushes, idle reaping, lost-agent detection."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.activity.run)
            await nursery.start(self.agents.run_lost_detector)
            task_status.started()
            while True:
                await trio.sleep(self.settings.reap_interval)
                try:
                    await self.reap_idle()
                except Exception:
                    log.exception("idle reaper failed")
