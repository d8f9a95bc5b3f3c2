"""One placement pass, as pure computation: the scheduler orders the queue, the agent
selector picks an agent for each session in turn, and each placement takes its room
before the next is weighed. No database and no I/O here, so that the cost of a pass
can be measured on its own (``bench/placement``) and reasoned about in tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs

from crucible.hookspecs.scheduler import (
    AgentCapacity,
    AgentSelector,
    ClusterLoad,
    PendingSession,
    Scheduler,
    Slots,
)


@attrs.frozen
class Decision:
    """`session` goes to agent `agent_id`."""

    session: PendingSession
    agent_id: str


def cluster_load(
    agents: Sequence[AgentCapacity], occupied_by_key: Mapping[str, Slots]
) -> ClusterLoad:
    """The total of every slot over `agents`, and what each key holds."""
    capacity: dict[str, float] = {}
    for agent in agents:
        for slot, amount in agent.available.items():
            capacity[slot] = capacity.get(slot, 0.0) + amount
    return ClusterLoad(capacity=capacity, occupied_by_key=occupied_by_key)


def never_fits(requested: Slots, agents: Sequence[AgentCapacity]) -> str | None:
    """Why `requested` could not run on any of `agents` even were they all empty (the
    slot asked beyond the largest offer), or None when some agent could hold it."""
    if any(agent.can_ever_fit(requested) for agent in agents):
        return None
    if not agents:
        return "no agent that can run it is linked to this manager"
    for slot, amount in sorted(requested.items()):
        largest = max(agent.available.get(slot, 0.0) for agent in agents)
        if amount > largest:
            return f"it asks for {amount:g} of {slot!r}, the largest agent offers {largest:g}"
    return "no single agent offers all it asks for at once"


@attrs.frozen
class Plan:
    decisions: list[Decision]
    #: Seconds until the session holding the queue stops holding it (None: nobody
    #: holds it): a pass is due then even if no capacity frees.
    held_for: float | None = None


def plan(
    pending: Sequence[PendingSession],
    agents: Sequence[AgentCapacity],
    *,
    scheduler: Scheduler,
    selector: AgentSelector,
    occupied_by_key: Mapping[str, Slots],
    head_block_timeout: float,
    now: datetime,
) -> Plan:
    """Where each session of `pending` that fits now goes, in the scheduler's order.

    A session that fits nowhere is passed over, unless the scheduler says it holds the
    queue and it has waited less than `head_block_timeout` seconds: then the pass stops
    there and those behind it wait too.
    """
    load = cluster_load(agents, occupied_by_key)
    room = {agent.agent_id: agent for agent in agents}
    decisions: list[Decision] = []
    for session in scheduler.order(pending, load):
        offering = [agent for agent in room.values() if agent.offers(session.image)]
        choice = selector.select(session, offering)
        if choice is None:
            waited = (now - session.requested_at).total_seconds()
            if scheduler.holds_queue(session) and waited < head_block_timeout:
                return Plan(decisions, held_for=head_block_timeout - waited)
            continue
        room[choice.agent_id] = choice.with_placed(session.requested)
        decisions.append(Decision(session, choice.agent_id))
    return Plan(decisions)
