"""What the agents' reports mean for the sessions: every heartbeat is held against the
``kernels`` table, kernel events and lost agents end the sessions concerned.

The agent directory (`crucible.cluster.directory`) records the agents and hands each
report on as a notice (`crucible.cluster.notices`); `Reconciler.run` takes them off
that channel in its own task, one task per notice, so that one slow agent (an orphan
that takes long to remove) holds up nobody else's reports.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import attrs
import trio

from crucible.cluster.notices import AgentNotice, AgentsLost, EventReported, HeartbeatRecorded
from crucible.db.pool import Database
from crucible.db.queries import kernels
from crucible.protocol.reports import AgentEvent, Heartbeat, KernelTerminated
from crucible.sessions.agent_calls import AgentCalls
from crucible.sessions.endings import EndRecorder
from crucible.sessions.pending import PendingQueue
from crucible.usage import record_memory_samples

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class Reconciler:
    db: Database
    #: What the agent directory hands on (`crucible.cluster.notices`).
    notices: trio.MemoryReceiveChannel[AgentNotice]
    #: Removes the kernels an agent runs for nobody.
    calls: AgentCalls
    endings: EndRecorder
    #: Told what each agent offers: a new agent or more room may place a waiting session.
    queue: PendingQueue
    #: A running kernel its agent does not list ends only when older than this: a
    #: create may be in flight.
    missing_kernel_grace: float

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for notice in self.notices:
                nursery.start_soon(self.handle, notice)

    async def handle(self, notice: AgentNotice) -> None:
        # A report that cannot be reconciled now (the database is slow, the message is
        # odd) is a missed heartbeat, not a reason to stop reconciling.
        try:
            if isinstance(notice, HeartbeatRecorded):
                self.queue.agent_reported(notice.agent_id, notice.heartbeat.agent.capacity)
                await self.reconcile(notice.agent_id, notice.heartbeat)
            elif isinstance(notice, EventReported):
                await self.on_event(notice.agent_id, notice.event)
            else:
                await self.on_agents_lost(notice)
        except Exception:
            agents = getattr(notice, "agent_ids", None) or (getattr(notice, "agent_id", ""),)
            log.exception("could not handle a report about agent %s", ", ".join(agents))

    async def on_event(self, agent_id: str, event: AgentEvent) -> None:
        if isinstance(event, KernelTerminated):
            kernel_id = event.kernel_id
            reason = event.reason or "terminated"
            log.info("agent %s reports kernel %s ended: %s", agent_id, kernel_id, reason)
            try:
                await self.endings.record(kernel_id, reason)
            except Exception:
                log.exception("could not record the end of kernel %s", kernel_id)

    async def reconcile(self, agent_id: str, heartbeat: Heartbeat) -> None:
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
                await self.calls.remove_orphan(agent_id, kernel_id)
        # Kernels we think run there but the agent does not have (after a grace period,
        # since a create may be in flight).
        now = datetime.now(UTC)
        for kernel_id, placed in known.items():
            if (
                kernel_id not in reported
                and placed.status in ("RUNNING",)
                and (now - placed.created_at).total_seconds() > self.missing_kernel_grace
            ):
                await self.endings.record(kernel_id, "lost-by-agent")

    async def on_agents_lost(self, notice: AgentsLost) -> None:
        for kernel_id in await kernels.live_on_agents(self.db, notice.agent_ids):
            await self.endings.record(kernel_id, "agent-lost")
