"""Last come, first served: the newest request first (an interactive user who just
asked is served before a backlog of batch sessions). Nothing holds the queue: a session
that does not fit lets the older ones behind it try."""

from __future__ import annotations

from collections.abc import Sequence

from crucible.hookspecs.markers import hookimpl
from crucible.hookspecs.scheduler import ClusterLoad, PendingSession


class LIFOScheduler:
    name = "lifo"

    def order(self, pending: Sequence[PendingSession], load: ClusterLoad) -> list[PendingSession]:
        return sorted(pending, key=lambda p: (p.requested_at, p.kernel_id), reverse=True)

    def holds_queue(self, session: PendingSession) -> bool:
        return False


@hookimpl
def crucible_scheduler() -> LIFOScheduler:
    return LIFOScheduler()
