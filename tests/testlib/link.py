"""Speaking the manager ↔ agent link by hand, as a fake (or hostile) peer does."""

from __future__ import annotations

from typing import Any

import trio
from trio_websocket import WebSocketConnection

from crucible.protocol.framing import (
    FIRST,
    HEADER,
    LAST,
    LinkLimits,
    Reassembler,
    Received,
    Refused,
    encode_message,
)
from crucible.protocol.version import VERSION

#: Roomy limits for the fake peer's own reassembly.
PEER_LIMITS = LinkLimits(
    frame_bytes=64 * 1024,
    max_message_bytes=256 * 1024 * 1024,
    max_partial_messages=64,
    send_timeout=10.0,
)


def raw_frame(
    flags: int, message_id: int, payload: bytes, *, ref: int = 0, total: int = -1
) -> bytes:
    size = len(payload) if total < 0 else total
    return HEADER.pack(VERSION, flags, message_id, ref, size) + payload


def message_frames(
    message: dict[str, Any] | bytes, *, message_id: int, ref: int = 0, frame_bytes: int = 65536
) -> list[bytes]:
    """`message` (or raw bytes posing as one) cut into frames."""
    data = message if isinstance(message, bytes) else encode_message(message)
    chunks = [data[i : i + frame_bytes] for i in range(0, len(data), frame_bytes)] or [b""]
    frames = []
    for index, chunk in enumerate(chunks):
        flags = (FIRST if index == 0 else 0) | (LAST if index == len(chunks) - 1 else 0)
        frames.append(raw_frame(flags, message_id, chunk, ref=ref, total=len(data)))
    return frames


class PeerEnd:
    """One end of a link driven by a test: frames out, whole messages in."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self._reassembler = Reassembler(PEER_LIMITS)
        self._ids = 1000

    async def send(self, message: dict[str, Any] | bytes, *, ref: int = 0) -> None:
        self._ids += 1
        for frame in message_frames(message, message_id=self._ids, ref=ref):
            await self.ws.send_message(frame)

    async def receive(self, *, timeout: float = 10.0) -> Received:
        """The next whole message (a test peer never expects a refusal)."""
        with trio.fail_after(timeout):
            while True:
                data = await self.ws.get_message()
                assert isinstance(data, bytes), f"a TEXT frame on the link: {data!r}"
                got = self._reassembler.feed(data)
                assert not isinstance(got, Refused), got
                if got is not None:
                    return got

    async def receive_type(self, kind: str, *, timeout: float = 10.0) -> Received:
        """The next message of type `kind`, skipping others (heartbeats, mostly)."""
        with trio.fail_after(timeout):
            while True:
                got = await self.receive(timeout=timeout)
                if got.message.get("type") == kind:
                    return got
