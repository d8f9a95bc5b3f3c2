"""Credit flow control of one byte stream, seen from one side (sans transport).

Both the manager and the agent hold a `StreamFlow` per stream and peer: what arrives is
`take`-n into a buffer no larger than the window this side granted (more is the peer's
protocol error: `WindowExceeded`, which ends that stream only); what has been passed on
is reported with `consumed`, which says how much credit to grant back (in batches of a
quarter window, so a steady stream costs one credit message per quarter window, and a
blocked sender is always unblocked once its bytes are passed on). Sending takes credit
the peer granted (`reserve`), waiting while there is none. See
`crucible.protocol.streams` for the messages.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable

import attrs
import trio


class WindowExceeded(Exception):
    """The peer sent more than the window it was granted."""


class StreamEnded(Exception):
    """The stream is over; `reason` says why."""

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.refused = refused


@attrs.frozen
class Ending:
    reason: str
    refused: bool = False


class StreamFlow:
    """Receive up to `receive_window` unacknowledged bytes; send within the credit granted."""

    def __init__(self, *, receive_window: int, send_credit: int = 0) -> None:
        self.receive_window = receive_window
        self._inbound: collections.deque[bytes] = collections.deque()
        #: Bytes received and not yet credited back (buffered, or passed on).
        self._held = 0
        self._uncredited = 0
        self._send_credit = send_credit
        self._changed = trio.Event()
        self.ending: Ending | None = None

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def changed(self) -> None:
        """Return at the next change (bytes, credit, the end)."""
        await self._changed.wait()

    @property
    def buffered(self) -> int:
        return sum(len(chunk) for chunk in self._inbound)

    # -- receiving ------------------------------------------------------------------------

    def take(self, data: bytes) -> None:
        """Bytes from the peer; `WindowExceeded` if they pass the window granted."""
        if self.ending is not None or not data:
            return
        if self._held + len(data) > self.receive_window:
            raise WindowExceeded(
                f"{self._held + len(data)} bytes in flight, over the window of "
                f"{self.receive_window}"
            )
        self._held += len(data)
        self._inbound.append(data)
        self._wake()

    async def receive(self) -> bytes:
        """The next bytes from the peer; b"" once the stream ended (what was buffered
        before the end comes first)."""
        while not self._inbound:
            if self.ending is not None:
                return b""
            await self._changed.wait()
        return self._inbound.popleft()

    def consumed(self, n: int) -> int:
        """`n` received bytes were passed on; returns the credit to grant the peer now
        (0: not yet worth a message)."""
        self._uncredited += n
        if self._uncredited < max(1, self.receive_window // 4):
            return 0
        grant, self._uncredited = self._uncredited, 0
        self._held -= grant
        return grant

    # -- sending --------------------------------------------------------------------------

    def grant(self, n: int) -> None:
        """The peer may be sent `n` bytes more."""
        self._send_credit += n
        self._wake()

    async def reserve(self, wanted: int) -> int:
        """Take up to `wanted` bytes of credit (at least 1), waiting for some;
        `StreamEnded` once the stream is over."""
        while True:
            if self.ending is not None:
                raise StreamEnded(self.ending.reason, refused=self.ending.refused)
            if self._send_credit > 0:
                n = min(wanted, self._send_credit)
                self._send_credit -= n
                return n
            await self._changed.wait()

    async def send_all(
        self, data: bytes, chunk_bytes: int, send_one: Callable[[bytes], Awaitable[None]]
    ) -> None:
        """Send `data` in chunks of at most `chunk_bytes`, each within the credit."""
        view = memoryview(data)
        while view:
            n = await self.reserve(min(len(view), chunk_bytes))
            await send_one(bytes(view[:n]))
            view = view[n:]

    # -- the end --------------------------------------------------------------------------

    def end(self, reason: str, *, refused: bool = False) -> None:
        """The stream is over (the first reason given stays); waiters wake."""
        if self.ending is None:
            self.ending = Ending(reason, refused)
            self._wake()
