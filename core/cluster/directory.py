"""The links from this manager process to agents, their rows, and lost-agent detection.

What a heartbeat, an event or a lost agent means for the kernels is not decided here:
each is handed on as a notice (`crucible.cluster.notices`) on the channel given at
construction, which the session reconciler reads.
"""

from __future__ import annotations

import logging

import attrs
import trio

from crucible.cluster.links import AgentLink, AgentUnreachable
from crucible.cluster.notices import AgentNotice, AgentsLost, EventReported, HeartbeatRecorded
from crucible.db.pool import Database
from crucible.db.queries import agents
from crucible.periodic import repeat
from crucible.protocol import codec
from crucible.protocol.reports import AgentEvent, Heartbeat

log = logging.getLogger(__name__)


@attrs.define(kw_only=True)
class AgentDirectory:
    """Links from this manager process to agents, and agent rows in the database."""

    db: Database
    #: Where heartbeats (once recorded), kernel events and lost agents are handed on.
    notices: trio.MemorySendChannel[AgentNotice]
    #: An agent is lost after `lost_after` seconds without a heartbeat; the scans for
    #: such agents are `scan_interval` seconds apart.
    lost_after: float
    scan_interval: float
    #: The links this manager process holds, by agent id.
    links: dict[str, AgentLink] = attrs.field(init=False, factory=dict)
    _links_changed: trio.Event = attrs.field(init=False, factory=trio.Event)
    #: The agents whose heartbeat this process has recorded.
    _reported: set[str] = attrs.field(init=False, factory=set)
    _reports_changed: trio.Event = attrs.field(init=False, factory=trio.Event)

    def attach(self, link: AgentLink) -> None:
        old = self.links.get(link.agent_id)
        if old is not None:
            old.close()
        self.links[link.agent_id] = link
        self._links_changed.set()
        self._links_changed = trio.Event()

    def detach(self, link: AgentLink) -> None:
        link.close()
        if self.links.get(link.agent_id) is link:
            del self.links[link.agent_id]

    def link(self, agent_id: str) -> AgentLink:
        link = self.links.get(agent_id)
        if link is None:
            raise AgentUnreachable(agent_id)
        return link

    async def wait_linked(self, agent_id: str | None = None) -> None:
        """Wait until `agent_id` (or any agent) has a link here."""
        while not (self.links if agent_id is None else agent_id in self.links):
            await self._links_changed.wait()

    async def wait_reported(self) -> None:
        """Wait until some linked agent's heartbeat (with its images) is recorded."""
        while not any(agent_id in self.links for agent_id in self._reported):
            await self._reports_changed.wait()

    async def record_heartbeat(self, agent_id: str, addr: str, heartbeat: Heartbeat) -> None:
        info = heartbeat.agent
        await agents.record_heartbeat(
            self.db,
            agent_id,
            addr=addr,
            version=str(info.version),
            capacity=info.capacity,
            images=codec.unstructure(info.images),
            devices=codec.unstructure(info.devices),
            warm_pool=codec.unstructure(info.pool) if info.pool is not None else None,
        )
        if agent_id not in self._reported:
            self._reported.add(agent_id)
            self._reports_changed.set()
            self._reports_changed = trio.Event()
        await self.notices.send(HeartbeatRecorded(agent_id, heartbeat))

    async def handle_event(self, agent_id: str, event: AgentEvent) -> None:
        await self.notices.send(EventReported(agent_id, event))

    async def mark_lost(self) -> list[str]:
        lost = await agents.mark_lost(self.db, self.lost_after)
        if lost:
            log.warning("agents lost (no heartbeat for %s s): %s", self.lost_after, lost)
            await self.notices.send(AgentsLost(tuple(lost)))
        return lost

    async def run_lost_detector(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await repeat(
            self.mark_lost,
            self.scan_interval,
            log=log,
            failure="lost-agent scan failed",
            task_status=task_status,
        )
