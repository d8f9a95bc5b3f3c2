"""The session lifecycle: create (get-or-create), execute, restart, destroy, reap.

State of record is the ``kernels`` table; the agents hold the containers. Placement
runs under a cluster-wide advisory lock, so two managers never overbook an agent or
a keypair's concurrency limit.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

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
from crucible.db.pool import Database
from crucible.hookspecs.scheduler import AgentCapacity, PendingSession, Scheduler
from crucible.kernels.catalog import resolve_lang
from crucible.keypairs import Keypair
from crucible.resource_policies import ResourcePolicyStore
from crucible.sessions.activity import ActivityRecorder
from crucible.sessions.events import SessionEvents
from crucible.sessions.model import SESSION_COLUMNS, Session, normalize_stats
from crucible.sessions.requests import check_token
from crucible.sessions.resources import Resources, resolve_resources
from crucible.usage import record_memory_samples

if TYPE_CHECKING:
    from crucible.vfolders.service import VFolderService

log = logging.getLogger(__name__)

#: pg_advisory_xact_lock key serialising placement decisions cluster-wide.
PLACEMENT_LOCK_ID = 0x43525550  # "CRUP"
#: Timeouts of calls to agents, beyond the time the call itself is meant to take.
CREATE_TIMEOUT = 120.0
CALL_TIMEOUT = 30.0
CALL_MARGIN = 10.0
#: How long the agent may take to acknowledge the cancellation of an abandoned run (the
#: caller waits for it shielded, so it must stay short).
CANCEL_TIMEOUT = 5.0
#: Seconds between idle-session scans.
REAP_INTERVAL = 10.0


def _agent_error(exc_class: type[errors.AgentError], exc: Exception) -> errors.ProblemError:
    if isinstance(exc, AgentMessageTooLarge):
        # Too large to carry to the agent: the request's fault, and nothing ran.
        return errors.RequestTooLarge(f"The request is too large for the agent link: {exc.title}.")
    if isinstance(exc, AgentCallFailed):
        return exc_class(
            exc.title,
            agent_error_title=exc.title,
            exception=exc.exception,
            agent_error_type=exc.kind if exc.kind.startswith("agent-") else None,
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
        self, config: Config, db: Database, agents: AgentDirectory, scheduler: Scheduler
    ) -> None:
        self.config = config
        self.db = db
        self.agents = agents
        self.scheduler = scheduler
        self.events = SessionEvents()
        #: Resolves ``config.mounts``; set by the manager context (None: no vfolders).
        self.vfolders: VFolderService | None = None
        self.activity = ActivityRecorder(db, interval=1.0)
        self.policies = ResourcePolicyStore(db)
        agents.on_event = self._on_agent_event
        agents.on_heartbeat = self._on_heartbeat
        agents.on_lost = self._on_agents_lost

    # -- lookups --------------------------------------------------------------------------

    async def get_live(self, access_key: str, token: str) -> Session:
        # A token no session can have (a NUL, a slash, 500 characters) is the client's
        # mistake, said as such before the database sees it; a well-formed one is a 404.
        check_token(token, "kernelId")
        row = await self.db.fetchrow(
            f"""SELECT {SESSION_COLUMNS} FROM kernels
                WHERE access_key = $1 AND sess_id = $2 AND role = 'master'
                  AND status <> 'TERMINATED'""",
            access_key,
            token,
        )
        if row is None:
            raise errors.KernelNotFound(f"No live session {token!r}.")
        return Session.from_row(row)

    async def count_live(self) -> int:
        return int(
            await self.db.fetchval(
                "SELECT count(*) FROM kernels WHERE role = 'master' AND status <> 'TERMINATED'"
            )
        )

    async def image_catalog(self) -> list[tuple[str, dict[str, str]]]:
        rows = await self.db.fetch("SELECT images FROM agents WHERE status = 'ALIVE'")
        catalog: dict[str, dict[str, str]] = {}
        for row in rows:
            images = row["images"]
            for image in json.loads(images) if isinstance(images, str) else images:
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
            result = await link.call(
                "create_kernel",
                {
                    "kernel_id": session.id,
                    "image": image,
                    # What placement reserved: the request capped by the resource policy.
                    "cpu": float(session.occupied_slots.get("cpu", resources.cpu)),
                    "mem": int(session.occupied_slots.get("mem", resources.mem)),
                    "environ": dict(environ),
                    "mounts": [
                        {k: m[k] for k in ("source", "target", "read_only")}
                        for m in resolved_mounts
                    ],
                    # The agent shares its execution slots fairly between access keys.
                    "access_key": keypair.access_key,
                },
                timeout=CREATE_TIMEOUT,
            )
        except (AgentUnreachable, AgentCallFailed, trio.TooSlowError) as exc:
            log.warning("creating session %s on %s failed: %s", token, session.agent_id, exc)
            await self._set_terminated(session.id, "creation-failed", status="ERROR")
            raise _agent_error(errors.KernelCreationFailed, exc) from exc
        except trio.Cancelled:
            # The caller went away mid-create: nothing may stay half-made. A kernel the
            # agent finishes creating anyway is removed at its next heartbeat.
            with trio.CancelScope(shield=True), trio.move_on_after(CALL_TIMEOUT):
                await self.destroy(session, "creation-cancelled")
            raise
        row = await self.db.fetchrow(
            f"""UPDATE kernels SET status = 'RUNNING', container_id = $2
                WHERE id = $1::uuid AND status = 'PREPARING' RETURNING {SESSION_COLUMNS}""",
            session.id,
            result.get("container_id"),
        )
        if row is None:  # destroyed while it was being created
            raise errors.KernelCreationFailed("The session was terminated while starting.")
        return Session.from_row(row), True

    async def _resolve_mounts(
        self, keypair: Keypair, token: str, requested: Sequence[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        """Check ``config.mounts`` before anything is created (a bad one is a 404).

        A request that will reuse a live session ignores its config (spec 4.2).
        """
        if not requested or self.vfolders is None:
            return []
        live = await self.db.fetchval(
            """SELECT count(*) FROM kernels WHERE access_key = $1 AND sess_id = $2
               AND role = 'master' AND status <> 'TERMINATED'""",
            keypair.access_key,
            token,
        )
        if live:
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
            found = await conn.fetch(
                "SELECT id FROM vfolders WHERE id = ANY($1::uuid[]) FOR SHARE", ids
            )
            if len({row["id"] for row in found}) == len(set(ids)):
                await conn.execute(
                    "UPDATE kernels SET mounts = $2::jsonb WHERE id = $1::uuid",
                    session.id,
                    json.dumps(mounts),
                )
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
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PLACEMENT_LOCK_ID)
            row = await conn.fetchrow(
                f"""SELECT {SESSION_COLUMNS} FROM kernels WHERE access_key = $1 AND sess_id = $2
                    AND role = 'master' AND status <> 'TERMINATED'""",
                keypair.access_key,
                token,
            )
            if row is not None:
                return Session.from_row(row), False
            # The keypair's resource policy caps this session and the keypair's total.
            policy = await self.policies.for_keypair(conn, keypair.access_key)
            resources = policy.cap(resources)
            live = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE role = 'master') AS sessions,
                          coalesce(sum((occupied_slots->>'cpu')::numeric), 0) AS cpu,
                          coalesce(sum((occupied_slots->>'mem')::numeric), 0) AS mem
                   FROM kernels WHERE access_key = $1 AND status <> 'TERMINATED'""",
                keypair.access_key,
            )
            policy.check_session_quota(
                concurrency_limit=keypair.concurrency_limit,
                live=live["sessions"],
                used_cpu=float(live["cpu"]),
                used_mem=int(live["mem"]),
                wanted=resources,
            )
            agents = await self._capacities(conn, image)
            pending = PendingSession(
                kernel_id=token,
                access_key=keypair.access_key,
                requested=resources.slots(),
                requested_at=datetime.now(UTC),
            )
            choice = self.scheduler.pick_agent(pending, agents)
            if choice is None:
                raise errors.InstanceNotAvailable(
                    f"No agent has {resources.cpu} free cores and {resources.mem} free bytes."
                )
            row = await conn.fetchrow(
                f"""INSERT INTO kernels (id, sess_id, access_key, agent_id, status, image, lang,
                                         tag, environ, occupied_slots)
                    VALUES ($1, $2, $3, $4, 'PREPARING', $5, $6, $7, $8::jsonb, $9::jsonb)
                    RETURNING {SESSION_COLUMNS}""",
                uuid.uuid4(),
                token,
                keypair.access_key,
                choice.agent_id,
                image,
                lang,
                tag,
                json.dumps(environ),
                json.dumps(resources.slots()),
            )
            await conn.execute(
                """INSERT INTO usage_daily (access_key, day, sessions_started)
                   VALUES ($1, current_date, 1) ON CONFLICT (access_key, day)
                   DO UPDATE SET sessions_started = usage_daily.sessions_started + 1""",
                keypair.access_key,
            )
            return Session.from_row(row), True

    async def _capacities(self, conn: Any, image: str) -> list[AgentCapacity]:
        rows = await conn.fetch(
            """SELECT a.id, a.available_slots, a.images,
                      coalesce(sum((k.occupied_slots->>'cpu')::numeric), 0) AS cpu,
                      coalesce(sum((k.occupied_slots->>'mem')::numeric), 0) AS mem
               FROM agents a LEFT JOIN kernels k
                 ON k.agent_id = a.id AND k.status <> 'TERMINATED'
               WHERE a.status = 'ALIVE'
               GROUP BY a.id"""
        )
        capacities = []
        for row in rows:
            if row["id"] not in self.agents.links:
                continue  # this manager could not talk to it
            images = row["images"]
            refs = {i["ref"] for i in (json.loads(images) if isinstance(images, str) else images)}
            if image not in refs:
                continue
            slots = row["available_slots"]
            available = json.loads(slots) if isinstance(slots, str) else slots
            capacities.append(
                AgentCapacity(
                    agent_id=row["id"],
                    available={k: float(v) for k, v in available.items()},
                    occupied={"cpu": float(row["cpu"]), "mem": float(row["mem"])},
                )
            )
        return capacities

    # -- calls on a live session ----------------------------------------------------------

    async def _call(
        self,
        session: Session,
        method: str,
        params: dict[str, Any],
        failure: type[errors.AgentError],
        *,
        timeout: float = CALL_TIMEOUT,
    ) -> Any:
        if session.agent_id is None or session.status != "RUNNING":
            raise errors.KernelNotFound(f"Session {session.token!r} is {session.status.lower()}.")
        try:
            return await self.agents.link(session.agent_id).call(
                method, {"kernel_id": session.id, **params}, timeout=timeout
            )
        except AgentCallFailed as exc:
            if exc.kind == "kernel-not-found":
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
        mode: str,
        code: str,
        options: dict[str, Any],
        flush_interval: float | None = None,
    ) -> dict[str, Any]:
        flush = (
            flush_interval
            if flush_interval is not None
            else self.config.sessions.exec_flush_interval
        )
        self.activity.touch(session.id, session.access_key, execution=mode in ("query", "batch"))
        try:
            result: dict[str, Any] = await self._call(
                session,
                "execute",
                {
                    "run_id": run_id,
                    "mode": mode,
                    "code": code,
                    "options": options,
                    "flush_interval": flush,
                },
                errors.KernelExecutionFailed,
                timeout=flush + CALL_MARGIN,
            )
        except trio.Cancelled:
            # The caller went away while waiting for this run (the client disconnected):
            # nobody will collect it, so it must not go on running or wait its turn.
            with trio.CancelScope(shield=True):
                await self.cancel_run(session, run_id)
            raise
        except errors.KernelExecutionFailed as exc:
            cause = exc.__cause__
            if isinstance(cause, AgentCallFailed) and cause.kind == "execution-queue-full":
                raise errors.ExecutionQueueFull(
                    f"Session {session.token!r}: {cause.title}."
                ) from cause
            raise
        if result.get("status") == "exec-timeout":
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
                "cancel_run",
                {"run_id": run_id},
                errors.KernelExecutionFailed,
                timeout=CANCEL_TIMEOUT,
            )
        except errors.ProblemError as exc:
            log.info("could not cancel run %s of %s: %s", run_id, session.token, exc)

    async def interrupt(self, session: Session) -> None:
        self.activity.touch(session.id, session.access_key)
        await self._call(session, "interrupt", {}, errors.KernelExecutionFailed)

    async def complete(self, session: Session, code: str, options: dict[str, Any]) -> list[str]:
        self.activity.touch(session.id, session.access_key)
        result = await self._call(
            session, "complete", {"code": code, "options": options}, errors.KernelExecutionFailed
        )
        return list(result.get("result") or [])

    async def logs(self, session: Session) -> str:
        self.activity.touch(session.id, session.access_key)
        result = await self._call(session, "logs", {}, errors.KernelExecutionFailed)
        return str(result.get("logs") or "")

    # -- session files (spec 4.9-4.11; the agent does the work, crucible.agent.files) ----

    async def file_call(
        self, session: Session, method: str, params: dict[str, Any], *, bad_path_status: int
    ) -> Any:
        """Relay a file call (``upload_files``, ``list_files``, ``download_files``).

        The agent's refusals become client errors: a bad or missing path is a 400 or a
        404 (`bad_path_status`; uploads answer 400, listings and downloads 404), a
        limit a 400; anything else stays a ``kernel-execution-failed``.
        """
        self.activity.touch(session.id, session.access_key)
        try:
            return await self._call(session, method, params, errors.KernelExecutionFailed)
        except errors.KernelExecutionFailed as exc:
            cause = exc.__cause__
            kind = cause.kind if isinstance(cause, AgentCallFailed) else ""
            if kind == "too-large" or (kind == "invalid-path" and bad_path_status == 400):
                raise errors.InvalidAPIParameters(cause.title) from cause  # type: ignore[union-attr]
            if kind in ("invalid-path", "file-not-found"):
                raise errors.GenericNotFound(cause.title) from cause  # type: ignore[union-attr]
            raise

    async def restart(self, session: Session) -> None:
        self.activity.touch(session.id, session.access_key)
        await self.db.execute(
            "UPDATE kernels SET status = 'RESTARTING' WHERE id = $1::uuid AND status = 'RUNNING'",
            session.id,
        )
        try:
            result = await self._call(
                attrs.evolve(session, status="RUNNING"),
                "restart_kernel",
                {},
                errors.KernelRestartFailed,
                timeout=CREATE_TIMEOUT,
            )
        except errors.KernelRestartFailed:
            await self._set_terminated(session.id, "restart-failed")
            raise
        await self.db.execute(
            """UPDATE kernels SET status = 'RUNNING', container_id = $2, last_active = now()
               WHERE id = $1::uuid AND status = 'RESTARTING'""",
            session.id,
            result.get("container_id"),
        )
        self.events.publish(session.id, "restarted", "user-requested")

    # -- destroy --------------------------------------------------------------------------

    async def destroy(
        self, session: Session, reason: str = "user-requested"
    ) -> dict[str, int] | None:
        """End a session; returns its last stats. Never leaves it half-ended."""
        await self.db.execute(
            """UPDATE kernels SET status = 'TERMINATING'
               WHERE id = $1::uuid AND status <> 'TERMINATED'""",
            session.id,
        )
        stats: dict[str, int] | None = session.last_stat
        if session.agent_id is not None:
            try:
                with trio.CancelScope(shield=True):
                    result = await self.agents.link(session.agent_id).call(
                        "destroy_kernel",
                        {"kernel_id": session.id, "reason": reason},
                        timeout=CALL_TIMEOUT,
                    )
                stats = normalize_stats(result.get("stats")) or stats
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
        rows = await self.db.fetch(
            f"""SELECT {SESSION_COLUMNS} FROM kernels
                WHERE role = 'master' AND status <> 'TERMINATED'"""
        )
        sessions = [Session.from_row(row) for row in rows]
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
        stats: dict[str, int] | None = None,
    ) -> None:
        row = await self.db.fetchrow(
            """UPDATE kernels SET status = 'TERMINATED', status_info = $2, terminated_at = now(),
                                  last_stat = coalesce($3::jsonb, last_stat)
               WHERE id = $1::uuid AND status <> 'TERMINATED'
               RETURNING access_key, last_stat""",
            session_id,
            reason if status == "TERMINATED" else f"{status.lower()}: {reason}",
            json.dumps(stats) if stats is not None else None,
        )
        if row is not None:
            self.events.publish(session_id, "terminated", reason)
            await self._account_usage(row["access_key"], normalize_stats(_loads(row["last_stat"])))

    async def _account_usage(self, access_key: str, stats: dict[str, int] | None) -> None:
        if not stats:
            return
        await self.db.execute(
            """INSERT INTO usage_daily (access_key, day, cpu_time_ms, mem_peak_bytes)
               VALUES ($1, current_date, $2, $3) ON CONFLICT (access_key, day)
               DO UPDATE SET cpu_time_ms = usage_daily.cpu_time_ms + EXCLUDED.cpu_time_ms,
                             mem_peak_bytes = greatest(usage_daily.mem_peak_bytes,
                                                       EXCLUDED.mem_peak_bytes)""",
            access_key,
            stats["cpu_used"],
            stats["mem_max_bytes"],
        )

    # -- agent reports --------------------------------------------------------------------

    async def _on_agent_event(self, agent_id: str, event: dict[str, Any]) -> None:
        if event.get("name") == "kernel_terminated":
            kernel_id = str(event.get("kernel_id"))
            reason = str(event.get("reason") or "terminated")
            log.info("agent %s reports kernel %s ended: %s", agent_id, kernel_id, reason)
            try:
                await self._set_terminated(kernel_id, reason)
            except Exception:
                log.exception("could not record the end of kernel %s", kernel_id)

    async def _on_heartbeat(self, agent_id: str, message: dict[str, Any]) -> None:
        reported = {}
        for entry in message.get("kernels") or []:
            if isinstance(entry, dict) and entry.get("kernel_id"):
                reported[str(entry["kernel_id"])] = normalize_stats(entry.get("stats"))
        rows = await self.db.fetch(
            """SELECT id::text AS id, status, created_at FROM kernels
               WHERE agent_id = $1 AND (status <> 'TERMINATED' OR id::text = ANY($2::text[]))""",
            agent_id,
            list(reported),
        )
        known = {row["id"]: row for row in rows}
        stat_updates = [
            (kid, json.dumps(stats))
            for kid, stats in reported.items()
            if stats is not None and kid in known and known[kid]["status"] != "TERMINATED"
        ]
        if stat_updates:
            await self.db.executemany(
                "UPDATE kernels SET last_stat = $2::jsonb WHERE id = $1::uuid", stat_updates
            )
            # One sample per live kernel per heartbeat: the daily average memory (usage).
            await record_memory_samples(
                self.db,
                [(kid, stats["mem_cur_bytes"]) for kid, stats in reported.items()
                 if stats is not None and kid in known and known[kid]["status"] != "TERMINATED"],
            )
        # Kernels the agent runs but nobody wants any more: remove them.
        for kernel_id in reported:
            row = known.get(kernel_id)
            if row is None or row["status"] == "TERMINATED":
                log.info("asking agent %s to remove orphan kernel %s", agent_id, kernel_id)
                await self._remove_orphan(agent_id, kernel_id)
        # Kernels we think run there but the agent does not have (after a grace period,
        # since a create may be in flight).
        now = datetime.now(UTC)
        for kernel_id, row in known.items():
            if (
                kernel_id not in reported
                and row["status"] in ("RUNNING",)
                and (now - row["created_at"]).total_seconds() > 30
            ):
                await self._set_terminated(kernel_id, "lost-by-agent")

    async def _remove_orphan(self, agent_id: str, kernel_id: str) -> None:
        try:
            await self.agents.link(agent_id).call(
                "destroy_kernel", {"kernel_id": kernel_id, "reason": "orphan"}, timeout=CALL_TIMEOUT
            )
        except (AgentUnreachable, AgentCallFailed, trio.TooSlowError) as exc:
            log.warning("could not remove orphan kernel %s: %s", kernel_id, exc)

    async def _on_agents_lost(self, agent_ids: list[str]) -> None:
        rows = await self.db.fetch(
            """SELECT id::text AS id FROM kernels
               WHERE agent_id = ANY($1::text[]) AND status <> 'TERMINATED'""",
            agent_ids,
        )
        for row in rows:
            await self._set_terminated(row["id"], "agent-lost")

    # -- idle reaper ----------------------------------------------------------------------

    async def reap_idle(self) -> int:
        timeout = self.config.sessions.idle_timeout
        if timeout <= 0:
            return 0
        rows = await self.db.fetch(
            f"""SELECT {SESSION_COLUMNS} FROM kernels
                WHERE role = 'master' AND status = 'RUNNING'
                  AND last_active < now() - make_interval(secs => $1)""",
            float(timeout),
        )
        for row in rows:
            session = Session.from_row(row)
            log.info("reaping idle session %s", session.token)
            await self._destroy_quietly(session, "idle-timeout")
        return len(rows)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background duties: activity flushes, idle reaping, lost-agent detection."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.activity.run)
            await nursery.start(self.agents.run_lost_detector)
            task_status.started()
            while True:
                await trio.sleep(REAP_INTERVAL)
                try:
                    await self.reap_idle()
                except Exception:
                    log.exception("idle reaper failed")


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
