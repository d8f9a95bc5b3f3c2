"""What the agent directory hands on to the session side, one notice at a time.

The directory (`crucible.cluster.directory`) records agents; what an agent's report
means for its kernels is the reconciler's (`crucible.sessions.reconciliation`). The
notices travel on a memory channel that `open_manager` opens, so neither side calls
into the other and each is built without the other.
"""

from __future__ import annotations

import attrs

from crucible.protocol.reports import AgentEvent, Heartbeat


@attrs.frozen
class HeartbeatRecorded:
    """`heartbeat` came from `agent_id`, whose row it has updated already."""

    agent_id: str
    heartbeat: Heartbeat


@attrs.frozen
class EventReported:
    """`agent_id` reported `event` about one of its kernels."""

    agent_id: str
    event: AgentEvent


@attrs.frozen
class AgentsLost:
    """These agents were just marked lost (no heartbeat for too long)."""

    agent_ids: tuple[str, ...]


AgentNotice = HeartbeatRecorded | EventReported | AgentsLost
