"""Per-session event fan-out for ``/stream/kernel/:id/events`` (spec 5.4)."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

#: Events a slow subscriber may fall behind by before it misses some.
SUBSCRIBER_BUFFER = 16


class SessionEvents:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[trio.MemorySendChannel[dict[str, Any]]]] = (
            collections.defaultdict(set)
        )

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

    def publish(self, session_id: str, name: str, reason: str) -> None:
        for channel in list(self._subscribers.get(session_id, ())):
            try:
                channel.send_nowait({"name": name, "reason": reason})
            except (trio.WouldBlock, trio.ClosedResourceError):
                pass  # a stalled subscriber loses events rather than stalling us
