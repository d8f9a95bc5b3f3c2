"""First come, first served: the oldest request first, and the head of the queue holds
the others back (for at most ``[scheduler] head_block_timeout``) so that a large session
is not starved by a stream of small ones."""

from __future__ import annotations

from collections.abc import Sequence

from crucible.hookspecs.markers import hookimpl
from crucible.hookspecs.scheduler import ClusterLoad, PendingSession


class FIFOScheduler:
    name = "fifo"

    def order(self, pending: Sequence[PendingSession], load: ClusterLoad) -> list[PendingSession]:
        return sorted(pending, key=lambda p: (p.requested_at, p.kernel_id))

    def holds_queue(self, session: PendingSession) -> bool:
        return True


@hookimpl
def crucible_scheduler() -> FIFOScheduler:
    return FIFOScheduler()
