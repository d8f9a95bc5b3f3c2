"""Dominant resource fairness (Ghodsi et al., NSDI 2011) across access keys.

A key's *dominant share* is the largest fraction of any one slot of the cluster (cpu,
mem, an accelerator's slots: every slot name alike) its placed sessions hold. The
queue goes to the key of the smallest dominant share first, its oldest session; that
session's request then counts towards the key's share as if it were placed, and the
next goes to whoever is smallest now. A key that asks for little of everything thus
keeps getting served while one that holds half the GPUs waits its turn.
"""

from __future__ import annotations

import heapq
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence

from crucible.hookspecs.markers import hookimpl
from crucible.hookspecs.scheduler import ClusterLoad, PendingSession


def dominant_share(held: Mapping[str, float], capacity: Mapping[str, float]) -> float:
    """The largest fraction of a slot of `capacity` that `held` takes (slots the
    cluster has none of are left out: nobody can hold them)."""
    return max(
        (amount / capacity[slot] for slot, amount in held.items() if capacity.get(slot, 0) > 0),
        default=0.0,
    )


class DRFScheduler:
    name = "drf"

    def order(self, pending: Sequence[PendingSession], load: ClusterLoad) -> list[PendingSession]:
        queues: dict[str, deque[PendingSession]] = defaultdict(deque)
        for session in sorted(pending, key=lambda p: (p.requested_at, p.kernel_id)):
            queues[session.access_key].append(session)
        held = {key: dict(load.occupied_by_key.get(key, {})) for key in queues}
        # One heap entry per key: (dominant share, oldest request, key).
        heap = [
            (dominant_share(held[key], load.capacity), queue[0].requested_at, key)
            for key, queue in queues.items()
        ]
        heapq.heapify(heap)
        ordered: list[PendingSession] = []
        while heap:
            _, _, key = heapq.heappop(heap)
            queue = queues[key]
            session = queue.popleft()
            ordered.append(session)
            for slot, amount in session.requested.items():
                held[key][slot] = held[key].get(slot, 0.0) + amount
            if queue:
                share = dominant_share(held[key], load.capacity)
                heapq.heappush(heap, (share, queue[0].requested_at, key))
        return ordered

    def holds_queue(self, session: PendingSession) -> bool:
        return False


@hookimpl
def crucible_scheduler() -> DRFScheduler:
    return DRFScheduler()
