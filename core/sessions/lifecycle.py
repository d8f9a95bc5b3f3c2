"""The session lifecycle the API drives: create (get-or-create), execute, restart,
destroy; a session's state of record is its ``kernels`` row, the agents hold the
containers.

This facade orders the steps and keeps the row's status; each step is a room of its
own: which image (`images`), which agent (`placement`; the `pending` queue while none
has room), the folders mounted (`mounts`), what is said to the agent and what its
failures mean (`agent_calls`), how an end is recorded (`endings`). What agents report
is reconciled apart (`reconciliation`), idle sessions are reaped apart (`reaper`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import attrs
import trio

from crucible import errors
from crucible.config import SessionsConfig
from crucible.db.pool import Database
from crucible.db.queries import agents, kernels
from crucible.keypairs import Keypair
from crucible.protocol.calls import AgentCall, Execute, ExecuteMode, ExecutionResult
from crucible.protocol.stats import KernelStats
from crucible.sessions.activity import ActivityRecorder
from crucible.sessions.agent_calls import AgentCalls
from crucible.sessions.endings import EndRecorder
from crucible.sessions.events import SessionEvents
from crucible.sessions.images import resolve_image
from crucible.sessions.live import LiveSessionCache
from crucible.sessions.model import Session
from crucible.sessions.mounts import SessionMounts, as_call_mounts
from crucible.sessions.placement import Placement, SessionRequest
from crucible.sessions.requests import check_token
from crucible.sessions.resources import requested_gpus, resolve_resources

log = logging.getLogger(__name__)

R = TypeVar("R")


# Not slotted, so that a test may stand in for one method of the instance.
@attrs.define(kw_only=True, slots=False)
class SessionLifecycle:
    db: Database
    #: ``[sessions]``: default resources, the execute flush interval...
    settings: SessionsConfig
    placement: Placement
    mounts: SessionMounts
    calls: AgentCalls
    endings: EndRecorder
    #: Counts the API calls on each session (its last activity, for the reaper).
    activity: ActivityRecorder
    #: The sessions' event streams (``/stream/kernel/:id/events``).
    events: SessionEvents
    #: Running sessions held for the calls on them (`crucible.sessions.live`).
    live: LiveSessionCache

    # -- lookups --------------------------------------------------------------------------

    async def get_live(self, access_key: str, token: str) -> Session:
        # A token no session can have (a NUL, a slash, 500 characters) is the client's
        # mistake, said as such before the database sees it; a well-formed one is a 404.
        check_token(token, "kernelId")
        session = await kernels.live_session(self.db, access_key, token)
        if session is None:
            raise errors.KernelNotFound(f"No live session {token!r}.")
        return session

    async def ended_reason(self, session: Session) -> str | None:
        """Why `session` ended, if it has (its row says so); None while it lives."""
        ended = await kernels.ended_among(self.db, [session.id])
        return ended[0][1] if ended else None

    async def get_live_held(self, access_key: str, token: str) -> tuple[Session, bool]:
        """`get_live` through the cache: the session, and whether it came from memory
        (then only its agent can say it still exists; see `execute_live`)."""
        check_token(token, "kernelId")
        session, held = await self.live.get(access_key, token)
        if session is None:
            raise errors.KernelNotFound(f"No live session {token!r}.")
        return session, held

    async def count_live(self) -> int:
        return await kernels.count_live_sessions(self.db)

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
        image, labels = await resolve_image(self.db, lang)
        # Which kind of GPU slot the request becomes depends on what agents have.
        room = await agents.most_free(self.db) if requested_gpus(creation_config) else {}
        resources = resolve_resources(creation_config, labels, self.settings, room)
        resolved_mounts = await self.mounts.resolve(keypair, token, mounts)
        request = SessionRequest(keypair, token, lang, image, tag, dict(environ), resources)
        session, created = await self.placement.place(request)
        if not created:
            if session.image != image:
                raise errors.KernelAlreadyExists(
                    f"Session {token!r} exists with image {session.lang!r}."
                )
            return session, False
        if session.status == "PENDING":
            # No agent has room yet: wait in the queue (or fail with 503 after a while).
            session = await self.placement.queue.await_placement(session)
        if resolved_mounts:
            await self.mounts.attach(session, resolved_mounts)
        try:
            kernel = await self.calls.create_kernel(
                session,
                resources=resources,
                environ=dict(environ),
                mounts=as_call_mounts(resolved_mounts),
            )
        except trio.Cancelled:
            # The caller went away mid-create: nothing may stay half-made. A kernel the
            # agent finishes creating anyway is removed at its next heartbeat.
            grace = self.settings.agent_call_timeout
            with trio.CancelScope(shield=True), trio.move_on_after(grace):
                await self.destroy(session, "creation-cancelled")
            raise
        running = await kernels.mark_running(
            self.db, session.id, kernel.container_id, service_ports=kernel.service_ports
        )
        if running is None:  # destroyed while it was being created
            raise errors.KernelCreationFailed("The session was terminated while starting.")
        return running, True

    # -- calls on a live session ----------------------------------------------------------

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
        flush = self.settings.exec_flush_interval if flush_interval is None else flush_interval
        self.activity.touch(session.id, session.access_key, execution=mode in ("query", "batch"))
        run = Execute(session.id, run_id, mode, code, options, flush)
        result = await self.calls.execute(session, run)
        if result.status == "exec-timeout":
            # The 18.12 client re-sends on exec-timeout; ending the session stops it (spec 4.6).
            await self.endings.record(session.id, "exec-timeout")
        return result

    async def execute_live(
        self,
        access_key: str,
        token: str,
        *,
        run_id: str,
        mode: ExecuteMode,
        code: str,
        options: dict[str, Any],
    ) -> ExecutionResult:
        """`execute` on session `token`, found through the cache.

        A held session whose agent no longer has its kernel may have been ended (and
        its token used again) through another manager: the entry is forgotten and the
        row read afresh. Nothing ran (the agent had no kernel to run it on), so the
        call is made once more on what the row says now.
        """
        session, held = await self.get_live_held(access_key, token)
        try:
            return await self.execute(session, run_id=run_id, mode=mode, code=code, options=options)
        except errors.KernelNotFound:
            if not held:
                raise
        self.live.forget(session.id)
        session = await self.get_live(access_key, token)
        return await self.execute(session, run_id=run_id, mode=mode, code=code, options=options)

    async def cancel_run(self, session: Session, run_id: str) -> None:
        """Stop run `run_id` of `session`, whose client went away (best effort)."""
        await self.calls.cancel_run(session, run_id)

    async def interrupt(self, session: Session) -> None:
        self.activity.touch(session.id, session.access_key)
        await self.calls.interrupt(session)

    async def complete(self, session: Session, code: str, options: dict[str, Any]) -> list[str]:
        self.activity.touch(session.id, session.access_key)
        return await self.calls.complete(session, code, options)

    async def logs(self, session: Session) -> str:
        self.activity.touch(session.id, session.access_key)
        return await self.calls.logs(session)

    async def file_call(self, session: Session, call: AgentCall[R], *, bad_path_status: int) -> R:
        """A session-files call (spec 4.9-4.11; see `AgentCalls.file_call`)."""
        self.activity.touch(session.id, session.access_key)
        return await self.calls.file_call(session, call, bad_path_status=bad_path_status)

    async def restart(self, session: Session) -> None:
        self.activity.touch(session.id, session.access_key)
        await kernels.mark_restarting(self.db, session.id)
        self.live.forget(session.id)
        try:
            restarted = await self.calls.restart_kernel(attrs.evolve(session, status="RUNNING"))
        except errors.KernelRestartFailed:
            await self.endings.record(session.id, "restart-failed")
            raise
        await kernels.mark_restarted(self.db, session.id, restarted.container_id)
        self.events.publish(session.id, "restarted", "user-requested")

    # -- destroy --------------------------------------------------------------------------

    async def destroy(self, session: Session, reason: str = "user-requested") -> KernelStats | None:
        """End a session; returns its last stats. Never leaves it half-ended."""
        await kernels.mark_terminating(self.db, session.id)
        self.live.forget(session.id)
        stats = session.last_stat
        try:
            stats = await self.calls.destroy_kernel(session, reason) or stats
        except errors.KernelDestructionFailed:
            await self.endings.record(session.id, reason, stats=stats)
            raise
        await self.endings.record(session.id, reason, stats=stats)
        return stats

    async def destroy_quietly(self, session: Session, reason: str) -> None:
        """`destroy`, a failure logged rather than raised (for sweeps of many)."""
        try:
            await self.destroy(session, reason)
        except errors.ProblemError as exc:
            log.warning("destroying %s failed: %s", session.token, exc)

    async def destroy_all(self) -> int:
        sessions = await kernels.live_sessions(self.db)
        async with trio.open_nursery() as nursery:
            for session in sessions:
                nursery.start_soon(self.destroy_quietly, session, "force-killed")
        return len(sessions)
