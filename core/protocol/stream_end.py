"""One end of a byte stream on the manager ↔ agent link, the same on both sides.

A `StreamEnd` holds the stream's `StreamFlow` and sends the messages of the rules in
`crucible.protocol.streams`: data within the far end's credit, a credit once received
bytes are passed on, the close. `take` applies what the far end sent (its data, credit
or close) to the flow and says which rule the message broke, if any; what to do about a
broken rule, and about a resize, is each side's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from crucible.protocol import codec
from crucible.protocol.framing import LinkClosed
from crucible.protocol.stream_flow import StreamFlow, WindowExceeded
from crucible.protocol.streams import (
    StreamClose,
    StreamCredit,
    StreamData,
    StreamMessage,
)

#: Sends one envelope on the link (`LinkClosed` once it is down).
SendMessage = Callable[[dict[str, Any]], Awaitable[None]]


class StreamEnd:
    def __init__(
        self, stream_id: int, send: SendMessage, flow: StreamFlow, *, chunk_bytes: int
    ) -> None:
        self.id = stream_id
        self._send = send
        self._chunk_bytes = chunk_bytes
        self.flow = flow

    @property
    def ended(self) -> bool:
        return self.flow.ending is not None

    async def tell(self, message: StreamMessage) -> None:
        await self._send(codec.stream_message(message))

    async def send_bytes(self, data: bytes) -> None:
        """Send `data` to the far end in chunks, each within its credit; `StreamEnded`
        once the stream is over, `LinkClosed` once the link is."""

        async def one(chunk: bytes) -> None:
            await self.tell(StreamData.of(self.id, chunk))

        await self.flow.send_all(data, self._chunk_bytes, one)

    async def grant_consumed(self, n: int) -> None:
        """`n` received bytes were passed on: grant the far end what that frees."""
        grant = self.flow.consumed(n)
        if grant and not self.ended:
            await self.tell(StreamCredit(self.id, grant))

    async def tell_closed(self, reason: str, *, refused: bool = False) -> None:
        """Tell the far end the stream is over (nothing to tell once the link is down)."""
        with contextlib.suppress(LinkClosed):
            await self.tell(StreamClose(self.id, reason, refused))

    def take(self, message: StreamData | StreamCredit | StreamClose) -> str | None:
        """Apply the far end's data, credit or close to the flow; the rule it broke, if any."""
        if isinstance(message, StreamData):
            try:
                self.flow.take(message.payload())
            except (ValueError, WindowExceeded) as exc:
                return str(exc)
        elif isinstance(message, StreamCredit):
            if message.bytes <= 0:
                return f"a credit of {message.bytes} bytes"
            self.flow.grant(message.bytes)
        else:
            self.flow.end(message.reason, refused=message.refused)
        return None
