"""Per-session event fan-out for ``/stream/kernel/:id/events`` (spec 5.4).

What this manager publishes reaches its own subscribers at once and, through the
relay (`crucible.sessions.event_relay`), the other managers on the same database;
what they publish arrives through the relay as `deliver` calls.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import trio

log = logging.getLogger(__name__)

#: Events a slow subscriber may fall behind by before it misses some.
SUBSCRIBER_BUFFER = 16

#: What the relay is handed of each event this manager publishes.
Forward = Callable[[str, str, str], None]


class SessionEvents:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[trio.MemorySendChannel[dict[str, Any]]]] = (
            collections.defaultdict(set)
        )
        self._forward: Forward | None = None

    @contextmanager
    def open_subscription(
        self, session_id: str
    ) -> Iterator[trio.MemoryReceiveChannel[dict[str, Any]]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](SUBSCRIBER_BUFFER)
        self._subscribers[session_id].add(send)
        try:
            yield receive
        finally:
            subscribers = self._subscribers.get(session_id)
            if subscribers is not None:
                subscribers.discard(send)
                if not subscribers:
                    del self._subscribers[session_id]
            send.close()

    def forward_to(self, forward: Forward | None) -> None:
        """Hand every event published from now on to `forward` too (the relay)."""
        self._forward = forward

    def subscribed(self) -> list[str]:
        """The sessions someone here subscribes to."""
        return list(self._subscribers)

    def publish(self, session_id: str, name: str, reason: str) -> None:
        """An event of a session this manager handled: to its subscribers here and
        (through the relay) to those of the other managers."""
        self.deliver(session_id, name, reason)
        if self._forward is not None:
            self._forward(session_id, name, reason)

    def deliver(self, session_id: str, name: str, reason: str) -> None:
        """To the session's subscribers on this manager only."""
        for channel in list(self._subscribers.get(session_id, ())):
            try:
                channel.send_nowait({"name": name, "reason": reason})
            except (trio.WouldBlock, trio.ClosedResourceError):
                pass  # a stalled subscriber loses events rather than stalling us
