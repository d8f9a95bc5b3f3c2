"""Agent selectors: which of the agents with room a session goes to.

* ``dispersed`` (the default): the agent with the most free room, so that sessions
  spread and noisy neighbours stay apart, which matters for untrusted code;
* ``concentrated``: the agent with the least room left that still fits, packing
  hosts so that whole agents stay free for large sessions (and can be drained);
* ``round-robin``: the next agent with room after the one chosen last.

Room is weighed over the slots the session asks for, each as a fraction of what the
agent offers, so that no slot name (cores, bytes, GPU shares) outweighs another by its
unit. Ties go to the smaller agent id, so that placement is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from crucible.hookspecs.markers import hookimpl
from crucible.hookspecs.scheduler import AgentCapacity, AgentSelector, PendingSession


def free_fraction(agent: AgentCapacity, session: PendingSession) -> float:
    """The mean free fraction of the slots `session` asks for, on `agent`."""
    slots = [s for s in session.requested if agent.available.get(s, 0.0) > 0] or ["cpu"]
    total = 0.0
    for slot in slots:
        offered = agent.available.get(slot, 0.0)
        total += agent.free.get(slot, 0.0) / offered if offered > 0 else 0.0
    return total / len(slots)


def by_room(
    session: PendingSession, agents: Sequence[AgentCapacity], *, most: bool
) -> AgentCapacity | None:
    """The fitting agent with the most (or the least) room for `session`."""
    sign = -1.0 if most else 1.0
    fitting = [a for a in agents if a.fits(session.requested)]
    return min(fitting, key=lambda a: (sign * free_fraction(a, session), a.agent_id), default=None)


class RoomSelector:
    """The fitting agent with the most room (`most`) or the least (`by_room`)."""

    name: str
    most: bool

    def select(
        self, session: PendingSession, agents: Sequence[AgentCapacity]
    ) -> AgentCapacity | None:
        return by_room(session, agents, most=self.most)


class DispersedSelector(RoomSelector):
    name = "dispersed"
    most = True


class ConcentratedSelector(RoomSelector):
    name = "concentrated"
    most = False


class RoundRobinSelector:
    name = "round-robin"

    def __init__(self) -> None:
        #: The agent chosen last: the next choice is the first fitting one after it.
        self._last = ""

    def select(
        self, session: PendingSession, agents: Sequence[AgentCapacity]
    ) -> AgentCapacity | None:
        fitting = sorted((a for a in agents if a.fits(session.requested)), key=lambda a: a.agent_id)
        if not fitting:
            return None
        chosen = next((a for a in fitting if a.agent_id > self._last), fitting[0])
        self._last = chosen.agent_id
        return chosen


@hookimpl
def crucible_agent_selectors() -> list[AgentSelector]:
    return [DispersedSelector(), ConcentratedSelector(), RoundRobinSelector()]
