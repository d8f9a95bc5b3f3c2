"""Scheduler plugins: in which order pending sessions are placed, and on which agent.

Two kinds, two settings: a *scheduler* (entry-point group ``crucible.schedulers``,
``[scheduler] name``) orders the queue; an *agent selector* (group
``crucible.agent_selectors``, ``[scheduler] agent_selector``) picks, among the agents
with room, the one a session goes to. Both see resource slots as names → amounts
(``cpu``, ``mem``, and whatever accelerators report, e.g. ``cuda.device``), and must
treat every slot name alike. The manager calls them under its cluster-wide placement
lock, once per placement pass, with plain values (no database, no I/O). Example::

    from crucible.hookspecs.markers import hookimpl

    class SmallestFirst:
        name = "smallest-first"

        def order(self, pending, load):
            return sorted(pending, key=lambda p: (sum(p.requested.values()), p.requested_at))

        def holds_queue(self, session):
            return False

    @hookimpl
    def crucible_scheduler():
        return SmallestFirst()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import attrs

from crucible.hookspecs.markers import hookspec

Slots = Mapping[str, float]


@attrs.frozen
class PendingSession:
    """A session waiting for a place: whose, what it asks for and when it asked."""

    kernel_id: str
    access_key: str
    requested: Slots
    requested_at: datetime
    #: The image it runs; only agents that have it are offered to the selector.
    image: str = ""


def _free(agent: AgentCapacity) -> dict[str, float]:
    return {k: v - agent.occupied.get(k, 0.0) for k, v in agent.available.items()}


@attrs.frozen
class AgentCapacity:
    """An alive agent: what it offers (`available`) and what its live kernels hold."""

    agent_id: str
    available: Slots
    occupied: Slots
    #: The images it has installed (empty: any, for tests and benches).
    images: frozenset[str] = frozenset()
    #: `available` minus `occupied`, slot by slot (computed once: selectors read it often).
    free: Mapping[str, float] = attrs.field(
        init=False, default=attrs.Factory(_free, takes_self=True)
    )

    def offers(self, image: str) -> bool:
        """Whether the agent can run `image` at all."""
        return not image or not self.images or image in self.images

    def fits(self, requested: Slots) -> bool:
        """Whether `requested` fits in what is free (a slot the agent lacks: no room)."""
        free = self.free
        return all(free.get(slot, 0.0) >= amount for slot, amount in requested.items())

    def can_ever_fit(self, requested: Slots) -> bool:
        """Whether `requested` would fit were the agent empty."""
        return all(self.available.get(s, 0.0) >= amount for s, amount in requested.items())

    def with_placed(self, requested: Slots) -> AgentCapacity:
        """This agent once a session holding `requested` runs on it."""
        occupied = dict(self.occupied)
        for slot, amount in requested.items():
            occupied[slot] = occupied.get(slot, 0.0) + amount
        return AgentCapacity(self.agent_id, self.available, occupied, self.images)


@attrs.frozen
class ClusterLoad:
    """What a scheduler may weigh: the cluster's total slots (over the agents placement
    may use) and what each access key's placed sessions hold."""

    capacity: Slots
    occupied_by_key: Mapping[str, Slots]


@runtime_checkable
class Scheduler(Protocol):
    #: The name a sysadmin writes in ``[scheduler] name``.
    name: str

    def order(self, pending: Sequence[PendingSession], load: ClusterLoad) -> list[PendingSession]:
        """Return `pending` in the order they should be placed (first = next)."""

    def holds_queue(self, session: PendingSession) -> bool:
        """Whether `session`, when it fits no agent, keeps those after it waiting (a
        head-of-line queue); the manager bounds how long (``[scheduler]
        head_block_timeout``), after which the others pass it."""


@runtime_checkable
class AgentSelector(Protocol):
    #: The name a sysadmin writes in ``[scheduler] agent_selector``.
    name: str

    def select(
        self, session: PendingSession, agents: Sequence[AgentCapacity]
    ) -> AgentCapacity | None:
        """Choose an agent with room for `session` (`AgentCapacity.fits`), or None."""


@hookspec
def crucible_scheduler() -> Scheduler:  # type: ignore[empty-body]
    """Return a scheduler object. Called once when the manager starts."""


@hookspec
def crucible_agent_selectors() -> Sequence[AgentSelector]:  # type: ignore[empty-body]
    """Return the agent selectors a plugin offers. Called once when the manager starts."""
