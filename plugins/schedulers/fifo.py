"""First come, first served; agents chosen dispersed (most free CPU first).

Spreading sessions over agents keeps noisy neighbours apart, which matters more for
untrusted code than packing hosts tightly.
"""

from __future__ import annotations

from collections.abc import Sequence

from crucible.hookspecs.markers import hookimpl
from crucible.hookspecs.scheduler import AgentCapacity, PendingSession


class FIFOScheduler:
    name = "fifo"

    def order(self, pending: Sequence[PendingSession]) -> list[PendingSession]:
        return sorted(pending, key=lambda p: p.requested_at)

    def pick_agent(
        self, session: PendingSession, agents: Sequence[AgentCapacity]
    ) -> AgentCapacity | None:
        fitting = [a for a in agents if a.fits(session.requested)]
        # Ties broken by id so placement is deterministic.
        return max(
            fitting,
            key=lambda a: (a.free.get("cpu", 0), a.free.get("mem", 0), a.agent_id),
            default=None,
        )


@hookimpl
def crucible_scheduler() -> FIFOScheduler:
    return FIFOScheduler()
