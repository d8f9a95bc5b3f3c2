"""Byte streams multiplexed on the manager ↔ agent link: terminals and app tunnels.

A stream is opened with the `OpenStream` call (the manager picks its id, unique on its
link) and then carries `StreamData` both ways, paced by `StreamCredit`: each side may
have at most the window the other granted in flight (the agent's window comes back in
`StreamOpened`, the manager's travels in the call), and grants more only once it has
passed bytes on (to the client's WebSocket, to the kernel). So a flooding stream holds
at most one window in the manager and one in the agent, and the link's round-robin
framing keeps it from delaying other calls by more than a few frames. Either side ends
a stream with `StreamClose`; a side that sends more than its window gets the stream
closed, never the link. Envelope (docs/internals.md)::

    {"type": "stream", "op": "data"|"credit"|"resize"|"close", "stream": N, ...}

Data is base64 in JSON: the link's framing stays the one JSON codec.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

import attrs

from crucible.protocol.calls import AgentCall, agent_call

#: ``pty``: the session's terminal (spec 5.3); ``tcp``: a connection to a service port
#: inside the container (spec 5.5).
StreamKind = Literal["pty", "tcp"]

#: Terminal sizes a resize may ask for (larger ones are refused, not clamped).
MAX_TERMINAL_ROWS = 1000
MAX_TERMINAL_COLS = 1000


def valid_size(rows: int, cols: int) -> bool:
    return 0 < rows <= MAX_TERMINAL_ROWS and 0 < cols <= MAX_TERMINAL_COLS


@attrs.frozen
class StreamOpened:
    #: Bytes the manager may send before the agent grants more.
    window: int


@agent_call("open_stream")
@attrs.frozen
class OpenStream(AgentCall[StreamOpened]):
    """Open stream `stream` to kernel `kernel_id`: its terminal, or a TCP connection
    to `port` on the container's loopback, waiting up to `wait` seconds for the port to
    accept (the manager has had the app started first: ``start_service``)."""

    kernel_id: str
    stream: int
    kind: StreamKind
    #: The terminal's size (``pty``; ignored for ``tcp``).
    rows: int
    cols: int
    port: int
    wait: float
    #: Bytes the agent may send before the manager grants more.
    window: int


@attrs.frozen
class StreamData:
    stream: int
    #: base64 of the bytes.
    data: str

    @classmethod
    def of(cls, stream: int, data: bytes) -> StreamData:
        return cls(stream, base64.b64encode(data).decode("ascii"))

    def payload(self) -> bytes:
        """The bytes; `ValueError` for data that is no base64."""
        try:
            return base64.b64decode(self.data, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"stream data is not base64: {exc}") from exc


@attrs.frozen
class StreamCredit:
    """The sender of this may be sent `bytes` more bytes."""

    stream: int
    bytes: int


@attrs.frozen
class StreamResize:
    """Manager → agent: the terminal's new size."""

    stream: int
    rows: int
    cols: int


@attrs.frozen
class StreamClose:
    """Either way: the stream is over (`reason` says why, for logs and close frames)."""

    stream: int
    reason: str
    #: The service refused the connection (a tunnel closes with code 1014).
    refused: bool = False


StreamMessage = StreamData | StreamCredit | StreamResize | StreamClose

#: The classes by their ``op``.
STREAM_OPS: dict[str, type[StreamMessage]] = {
    "data": StreamData,
    "credit": StreamCredit,
    "resize": StreamResize,
    "close": StreamClose,
}
_OP_OF = {cls: op for op, cls in STREAM_OPS.items()}


def op_of(message: StreamMessage) -> str:
    return _OP_OF[type(message)]
