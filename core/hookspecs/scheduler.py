"""Scheduler plugins: decide which pending session goes to which agent.

Entry-point group ``crucible.schedulers``; a sysadmin picks one by name with
``[scheduler] name = "..."``. Example plugin module::

    from crucible.hookspecs.markers import hookimpl
    from crucible.hookspecs.scheduler import AgentCapacity, PendingSession

    class LeastLoaded:
        name = "least-loaded"

        def order(self, pending):
            return sorted(pending, key=lambda p: p.requested["cpu"])

        def pick_agent(self, session, agents):
            fits = [a for a in agents if a.fits(session.requested)]
            return max(fits, key=lambda a: a.free["cpu"], default=None)

    @hookimpl
    def crucible_scheduler():
        return LeastLoaded()
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
    """A session waiting for a place: what it asks for and when it asked."""

    kernel_id: str
    access_key: str
    requested: Slots
    requested_at: datetime


@attrs.frozen
class AgentCapacity:
    """An alive agent and its free resources (capacity minus what live kernels hold)."""

    agent_id: str
    available: Slots
    occupied: Slots

    @property
    def free(self) -> dict[str, float]:
        return {k: v - self.occupied.get(k, 0) for k, v in self.available.items()}

    def fits(self, requested: Slots) -> bool:
        free = self.free
        return all(free.get(slot, 0) >= amount for slot, amount in requested.items())


@runtime_checkable
class Scheduler(Protocol):
    #: The name a sysadmin writes in ``[scheduler] name``.
    name: str

    def order(self, pending: Sequence[PendingSession]) -> list[PendingSession]:
        """Return `pending` in the order they should be placed (first = next)."""

    def pick_agent(
        self, session: PendingSession, agents: Sequence[AgentCapacity]
    ) -> AgentCapacity | None:
        """Choose an agent with room for `session`, or None when none fits."""


@hookspec
def crucible_scheduler() -> Scheduler:  # type: ignore[empty-body]
    """Return a scheduler object. Called once when the manager starts."""
