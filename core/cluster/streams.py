"""Byte streams on one agent link, seen from the manager (`crucible.protocol.streams`).

`AgentStreams` (one per `AgentLink`) opens streams and routes the agent's stream
messages to them; a `LinkStream` is one stream's manager end: bytes the agent sends
wait in its `StreamFlow` (never more than the window granted), and `passed_on` grants
more once the caller has handed them to the client. Whatever the agent sends that
breaks a stream's rules closes that stream, never the link.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

import trio

from crucible.protocol.framing import LinkClosed
from crucible.protocol.stream_end import SendMessage, StreamEnd
from crucible.protocol.stream_flow import StreamEnded, StreamFlow
from crucible.protocol.streams import OpenStream, StreamMessage, StreamOpened, StreamResize

log = logging.getLogger(__name__)


class LinkStream(StreamEnd):
    """One open stream: `receive` what the kernel sent, `send` to it, `aclose`."""

    def __init__(
        self,
        stream_id: int,
        send: SendMessage,
        *,
        window: int,
        chunk_bytes: int,
        on_closed: Callable[[LinkStream], None] = lambda stream: None,
    ) -> None:
        super().__init__(
            stream_id, send, StreamFlow(receive_window=window), chunk_bytes=chunk_bytes
        )
        self._on_closed = on_closed
        self.opened = False

    async def receive(self) -> bytes:
        """The next bytes from the kernel; b"" at the end (see `ending`)."""
        return await self.flow.receive()

    async def passed_on(self, n: int) -> None:
        """`n` received bytes reached the client: the agent may send more."""
        with contextlib.suppress(LinkClosed):
            await self.grant_consumed(n)

    async def send(self, data: bytes) -> None:
        """Send `data` to the kernel, within the agent's credit; `StreamEnded` once over."""
        try:
            await self.send_bytes(data)
        except LinkClosed as exc:
            self.flow.end("the agent's link went down")
            raise StreamEnded("the agent's link went down") from exc

    async def resize(self, rows: int, cols: int) -> None:
        if not self.ended:
            with contextlib.suppress(LinkClosed):
                await self.tell(StreamResize(self.id, rows, cols))

    async def aclose(self, reason: str = "closed by the client") -> None:
        """End the stream here and tell the agent (once)."""
        self._on_closed(self)
        if self.ended:
            return
        self.flow.end(reason)
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self.tell_closed(reason)

    def on_message(self, message: StreamMessage) -> bool:
        """A message of the agent's about this stream; False if it broke the rules
        (the caller closes the stream)."""
        if isinstance(message, StreamResize):
            return False  # a resize is the manager's to send
        broken = self.take(message)
        if broken is not None:
            log.warning("stream %d: %s", self.id, broken)
        return broken is None


class AgentStreams:
    """The streams open on one agent link."""

    def __init__(self, agent_id: str, send: SendMessage) -> None:
        self.agent_id = agent_id
        self._send = send
        self._ids = itertools.count(1)
        self._streams: dict[int, LinkStream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def new(self, *, window: int, chunk_bytes: int) -> LinkStream:
        stream = LinkStream(
            next(self._ids),
            self._send,
            window=window,
            chunk_bytes=chunk_bytes,
            on_closed=self.forget,
        )
        self._streams[stream.id] = stream
        return stream

    def opened(self, stream: LinkStream, reply: StreamOpened) -> None:
        stream.opened = True
        stream.flow.grant(reply.window)

    def forget(self, stream: LinkStream) -> None:
        self._streams.pop(stream.id, None)

    def deliver(self, message: StreamMessage, nursery: trio.Nursery) -> None:
        stream = self._streams.get(message.stream)
        if stream is None:
            return  # closed here already; its last messages cross ours
        if not stream.on_message(message):
            self.forget(stream)
            log.warning("agent %s broke the rules of stream %d", self.agent_id, stream.id)
            nursery.start_soon(stream.aclose, "the agent broke the stream's flow control")

    def close_all(self, reason: str) -> None:
        for stream in self._streams.values():
            stream.flow.end(reason)
        self._streams.clear()


def open_call(stream: LinkStream, **fields: Any) -> OpenStream:
    """The `OpenStream` call for `stream` (its id and window filled in)."""
    return OpenStream(stream=stream.id, window=stream.flow.receive_window, **fields)
