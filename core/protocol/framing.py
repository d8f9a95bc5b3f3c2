"""Framing of the manager ↔ agent link: JSON messages cut into bounded WebSocket frames.

Both ends speak it (``crucible.agent.manager_link``, ``crucible.api.agent_socket``). Every
message (a call, a reply, a heartbeat, an event) is encoded as UTF-8 JSON and sent as
one or more BINARY WebSocket messages, *frames*, of at most `LinkLimits.frame_bytes`
of payload each. So no frame comes near either side's WebSocket limit, whatever a
message holds, and the size of a message is bounded only by `max_message_bytes`,
which the receiver checks from the first frame on.

Frame layout, big-endian::

    version u8 | flags u8 | message id u32 | ref u32 | total u32 | payload

* ``flags``: `FIRST` on a message's first frame, `LAST` on its last (a one-frame
  message has both), `ABORT` when the sender gave up on a message it had begun.
* ``ref``: the call the message is about (a call's own id, or the id a reply answers);
  0 for none. A receiver that must refuse a message still knows which call to fail.
* ``total``: the size of the whole encoded message (the first frame's value counts).

One writer task owns the socket. Frames of different messages interleave round robin
(at most `max_partial_messages` at once), so a large transfer delays a heartbeat or
a small reply by a few frames only. A sender waits until its last frame is written:
a slow reader slows its writers instead of growing a queue. On the receiving side,
a message that is too large, malformed or one too many at once is *refused*, which
fails that one message (and the call it belongs to); only a broken frame stream
(`LinkBroken`) or a dead socket (`LinkClosed`) ends the link.
"""

from __future__ import annotations

import collections
import json
import struct
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from crucible.config import ClusterConfig
from crucible.protocol.failures import ErrorKind
from crucible.protocol.version import VERSION

HEADER = struct.Struct(">BBIII")
FIRST = 0x01
LAST = 0x02
ABORT = 0x04
_KNOWN_FLAGS = FIRST | LAST | ABORT
_MAX_ID = 0xFFFF_FFFF
#: Largest frame payload a peer may be configured with (`cluster.link_frame_bytes`);
#: receivers size their WebSocket limit by it, so any valid peer's frames fit.
MAX_FRAME_PAYLOAD = 1024 * 1024
MAX_WIRE_FRAME = MAX_FRAME_PAYLOAD + HEADER.size

#: Why a message was refused (the ``kind`` of the error that fails its call).
TOO_LARGE = ErrorKind.MESSAGE_TOO_LARGE
MALFORMED = ErrorKind.MALFORMED_MESSAGE
BUSY = ErrorKind.LINK_BUSY


class LinkClosed(Exception):
    """The link is down (the peer went away, or the link was closed here)."""


class LinkBroken(LinkClosed):
    """The peer broke the framing protocol: the frame stream is unusable."""


@attrs.define
class MessageTooLarge(Exception):
    """A message over `max_message_bytes` was not sent (nothing of it went out)."""

    size: int
    limit: int

    def __str__(self) -> str:
        return f"a message of {self.size} bytes exceeds the link's limit of {self.limit} bytes"


@attrs.frozen
class LinkLimits:
    """The bounds of one link, from the ``[cluster]`` settings."""

    frame_bytes: int
    max_message_bytes: int
    max_partial_messages: int
    send_timeout: float

    @classmethod
    def from_config(cls, cluster: ClusterConfig | None = None) -> LinkLimits:
        cluster = cluster or ClusterConfig()
        return cls(
            frame_bytes=min(cluster.link_frame_bytes, MAX_FRAME_PAYLOAD),
            max_message_bytes=cluster.link_max_message_bytes,
            max_partial_messages=cluster.link_max_partial_messages,
            send_timeout=cluster.link_send_timeout,
        )


@attrs.frozen
class Received:
    """A whole message from the peer."""

    message: dict[str, Any]
    ref: int


@attrs.frozen
class Refused:
    """A message from the peer that could not be taken; `kind` is one of TOO_LARGE,
    MALFORMED, BUSY."""

    ref: int
    kind: ErrorKind
    reason: str


Delivery = Received | Refused


class FrameTransport(Protocol):
    """One WebSocket, as the framing layer uses it (both ends adapt theirs)."""

    async def send_frame(self, frame: bytes) -> None:
        """Send one BINARY message; raise `LinkClosed` once the socket is gone."""

    async def receive_frame(self) -> bytes:
        """The next BINARY message; `LinkClosed` once the socket is gone, `LinkBroken`
        for anything that is not a binary message of at most `MAX_WIRE_FRAME` bytes."""


def encode_message(message: dict[str, Any]) -> bytes:
    # Not ASCII-escaped: user output is often non-ASCII, and escaping an emoji takes 12
    # bytes. Lone surrogates (valid in a Python str) pass through on both ends.
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def decode_message(data: bytes | bytearray) -> dict[str, Any]:
    """Raise ValueError (or RecursionError, for absurd nesting) when it is no message."""
    message = json.loads(data.decode("utf-8", "surrogatepass"))
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


class _Outgoing:
    """One message being sent: its bytes and how far the writer got."""

    __slots__ = ("aborted", "data", "done", "failed", "message_id", "offset", "ref")

    def __init__(self, message_id: int, ref: int, data: bytes) -> None:
        self.message_id = message_id
        self.ref = ref
        self.data = data
        self.offset = 0
        self.aborted = False
        self.failed = False
        self.done = trio.Event()

    def next_frame(self, frame_bytes: int) -> tuple[bytes, bool]:
        """The next frame to write, and whether it is this message's last."""
        total = len(self.data)
        if self.aborted:
            return HEADER.pack(VERSION, ABORT, self.message_id, self.ref, total), True
        flags = FIRST if self.offset == 0 else 0
        chunk = self.data[self.offset : self.offset + frame_bytes]
        self.offset += len(chunk)
        last = self.offset >= total
        if last:
            flags |= LAST
        return HEADER.pack(VERSION, flags, self.message_id, self.ref, total) + chunk, last


class _Partial:
    __slots__ = ("buffer", "ref", "total")

    def __init__(self, ref: int, total: int) -> None:
        self.ref = ref
        self.total = total
        self.buffer = bytearray()


class Reassembler:
    """Turns the peer's frames back into messages, within `limits`."""

    def __init__(self, limits: LinkLimits) -> None:
        self._limits = limits
        self._partial: dict[int, _Partial] = {}
        #: Messages refused on their first frame whose later frames are still coming.
        self._discarding: set[int] = set()

    @property
    def buffered_bytes(self) -> int:
        return sum(len(p.buffer) for p in self._partial.values())

    def feed(self, frame: bytes) -> Delivery | None:
        """Take one frame; return a message once one is whole (or refused).

        Raises `LinkBroken` when the frames contradict the protocol, since nothing
        after that could be trusted to belong to the message it claims.
        """
        if len(frame) < HEADER.size:
            raise LinkBroken(f"a frame of {len(frame)} bytes is shorter than its header")
        version, flags, message_id, ref, total = HEADER.unpack_from(frame)
        if version != VERSION:
            raise LinkBroken(f"frame version {version}; this side speaks {VERSION}")
        if flags & ~_KNOWN_FLAGS or message_id == 0:
            raise LinkBroken(f"a frame with flags {flags:#x} for message {message_id}")
        if flags & ABORT:
            self._partial.pop(message_id, None)
            self._discarding.discard(message_id)
            return None
        if flags & FIRST:
            if message_id in self._partial or message_id in self._discarding:
                raise LinkBroken(f"message {message_id} began twice")
            limit = self._limits.max_message_bytes
            if total > limit:
                reason = f"a message of {total} bytes exceeds the link's limit of {limit} bytes"
                return self._refuse(message_id, flags, ref, TOO_LARGE, reason)
            if len(self._partial) >= self._limits.max_partial_messages:
                reason = (
                    f"more than {self._limits.max_partial_messages} messages in flight at once"
                )
                return self._refuse(message_id, flags, ref, BUSY, reason)
            partial = _Partial(ref, total)
            self._partial[message_id] = partial
        elif message_id in self._discarding:
            if flags & LAST:
                self._discarding.discard(message_id)
            return None
        else:
            found = self._partial.get(message_id)
            if found is None:
                raise LinkBroken(f"a frame of message {message_id}, which never began")
            partial = found
        partial.buffer += memoryview(frame)[HEADER.size :]
        if len(partial.buffer) > partial.total:
            raise LinkBroken(f"message {message_id} is longer than the {partial.total} announced")
        if not flags & LAST:
            return None
        del self._partial[message_id]
        if len(partial.buffer) != partial.total:
            raise LinkBroken(f"message {message_id} is shorter than the {partial.total} announced")
        try:
            message = decode_message(partial.buffer)
        except (ValueError, RecursionError) as exc:
            return Refused(partial.ref, MALFORMED, f"a malformed message: {exc}"[:200])
        return Received(message, partial.ref)

    def _refuse(
        self, message_id: int, flags: int, ref: int, kind: ErrorKind, reason: str
    ) -> Refused:
        if not flags & LAST:
            if len(self._discarding) >= self._limits.max_partial_messages:
                raise LinkBroken("too many refused messages still in flight")
            self._discarding.add(message_id)
        return Refused(ref, kind, reason)


class FramedLink:
    """Messages over one `FrameTransport`: `send` from any task, `serve` in one."""

    def __init__(self, transport: FrameTransport, limits: LinkLimits) -> None:
        self._transport = transport
        self.limits = limits
        self._reassembler = Reassembler(limits)
        self._next_id = 0
        self._active: collections.deque[_Outgoing] = collections.deque()
        self._waiting: collections.deque[_Outgoing] = collections.deque()
        #: The message whose frame the writer is writing now (in neither queue).
        self._writing: _Outgoing | None = None
        self._wake = trio.Event()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, message: dict[str, Any], *, ref: int = 0) -> None:
        """Send `message`; return once its last frame is written.

        Raises `MessageTooLarge` (nothing sent) or `LinkClosed`. A sender cancelled
        half way makes the writer abort the message, so the peer drops its part.
        """
        if self._closed:
            raise LinkClosed("the link is closed")
        data = encode_message(message)
        if len(data) > self.limits.max_message_bytes:
            raise MessageTooLarge(len(data), self.limits.max_message_bytes)
        self._next_id = self._next_id % _MAX_ID + 1
        outgoing = _Outgoing(self._next_id, ref, data)
        self._waiting.append(outgoing)
        self._wake.set()
        try:
            await outgoing.done.wait()
        except BaseException:
            self._abandon(outgoing)
            raise
        if outgoing.failed:
            raise LinkClosed("the link went down before the message was sent")

    def _abandon(self, outgoing: _Outgoing) -> None:
        if outgoing.done.is_set():
            return
        if outgoing in self._waiting:
            self._waiting.remove(outgoing)
        elif outgoing.offset == 0 and outgoing in self._active:
            self._active.remove(outgoing)
        else:
            outgoing.aborted = True  # part of it is out: the writer tells the peer

    async def serve(self, deliver: Callable[[Delivery], None]) -> None:
        """Write queued frames and read the peer's until the link fails (it always
        raises, in an exception group: `LinkClosed`, `LinkBroken`, or a bug of
        `deliver`). Waiting senders then get `LinkClosed`."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_forever)
                while True:
                    delivery = self._reassembler.feed(await self._transport.receive_frame())
                    if delivery is not None:
                        deliver(delivery)
        finally:
            self._fail_all()

    def _fail_all(self) -> None:
        self._closed = True
        writing = (self._writing,) if self._writing is not None else ()
        for outgoing in (*writing, *self._active, *self._waiting):
            if not outgoing.done.is_set():
                outgoing.failed = True
                outgoing.done.set()
        self._writing = None
        self._active.clear()
        self._waiting.clear()

    async def _write_forever(self) -> None:
        limits = self.limits
        while True:
            while not (self._active or self._waiting):
                self._wake = trio.Event()
                await self._wake.wait()
            while self._waiting and len(self._active) < limits.max_partial_messages:
                self._active.append(self._waiting.popleft())
            outgoing = self._writing = self._active.popleft()
            frame, last = outgoing.next_frame(limits.frame_bytes)
            with trio.move_on_after(limits.send_timeout) as scope:
                await self._transport.send_frame(frame)
            self._writing = None
            if scope.cancelled_caught:
                # Half a frame may be out: nothing after it could be parsed.
                raise LinkBroken(f"the peer took no frame for {limits.send_timeout} s")
            if last:
                outgoing.done.set()
            else:
                self._active.append(outgoing)
