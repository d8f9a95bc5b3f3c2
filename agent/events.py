"""The agent's events (a kernel ended), delivered to every linked manager.

Each manager link adds itself as a sink while it is up; a sink that fails is logged
and skipped, so one broken link never keeps an event from the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from crucible.protocol.reports import AgentEvent

log = logging.getLogger(__name__)

EventSink = Callable[[AgentEvent], Awaitable[None]]


class EventSinks:
    """Where the agent's events go now."""

    def __init__(self) -> None:
        self._sinks: list[EventSink] = []

    def add(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def remove(self, sink: EventSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    async def emit(self, event: AgentEvent) -> None:
        for sink in list(self._sinks):
            try:
                await sink(event)
            except Exception:
                log.warning("could not deliver event %s", event.name, exc_info=True)
