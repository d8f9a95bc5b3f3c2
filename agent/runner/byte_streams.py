"""Byte streams the agent opens into the kernel: the terminal's clients and tunnel
connections to services listening on the container's loopback.

The agent numbers them; every stream keeps two counts (docs/internals.md, "Byte
streams"): `credit`, the bytes the agent lets us send (we read our source, the
terminal or the service's socket, only while there is some), and the bytes the agent
sent that we have not written on yet, never more than the window we granted it (we
grant more, `stream-credit`, once they are written). So a `yes` flood in the terminal
blocks on its own full terminal, not in this process's memory.

Standard library only (Python 3.9+).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable
from typing import Any

from .context import RunnerContext
from .flow import Flow

#: The most bytes one ``stream-data`` message carries.
CHUNK = 64 * 1024
#: The window the agent may fill before we grant more (our receive buffer's bound).
WINDOW = 512 * 1024
#: Terminal sizes taken (larger ones are refused).
MAX_ROWS = MAX_COLS = 1000


class ReadGate:
    """Reads one descriptor only while its owner says it may (credit) and the agent
    connection keeps up (`Flow`); `recheck` is called when the connection drains."""

    def __init__(
        self, streams: RunnerStreams, on_readable: Callable[[], None], recheck: Callable[[], None]
    ) -> None:
        self._streams = streams
        self._on_readable = on_readable
        self._recheck = recheck
        self._fd = -1
        self._waiting = False

    def set(self, fd: int, ready: bool) -> None:
        flow = self._streams.flow
        if ready and flow.paused:
            ready = False
            if not self._waiting:
                self._waiting = True
                flow.wait(self._resume)
        if fd != self._fd and self._fd >= 0:
            self._streams.ctx.loop.remove_reader(self._fd)
            self._fd = -1
        if ready and self._fd < 0:
            self._streams.ctx.loop.add_reader(fd, self._on_readable)
            self._fd = fd
        elif not ready and self._fd >= 0:
            self._streams.ctx.loop.remove_reader(self._fd)
            self._fd = -1

    def forget(self) -> None:
        """The descriptor is being closed (its owner `forget`s it in the loop)."""
        self._fd = -1

    def _resume(self) -> None:
        self._waiting = False
        self._recheck()


class ByteStream:
    """One stream's accounting; subclasses move the bytes."""

    def __init__(self, streams: RunnerStreams, stream_id: int, credit: int) -> None:
        self.streams = streams
        self.id = stream_id
        self.credit = credit
        self.inbuf = bytearray()
        self._uncredited = 0
        self.closed = False

    # -- to the agent ---------------------------------------------------------------------

    def emit(self, data: bytes) -> None:
        self.credit -= len(data)
        self.streams.ctx.send(
            {"op": "stream-data", "stream": self.id, "data": base64.b64encode(data).decode()}
        )

    def granted(self, n: int) -> None:
        self.credit += n
        self.output_allowed()

    def output_allowed(self) -> None:
        """Credit (or the agent connection) came back: read the source again."""

    # -- from the agent -------------------------------------------------------------------

    def received(self, data: bytes) -> None:
        if len(self.inbuf) + len(data) > WINDOW:
            self.close("the agent sent more than the window")
            return
        self.inbuf += data
        self.write_input()

    def write_input(self) -> None:
        """Write what `inbuf` holds to the destination; call `written`."""

    def written(self, n: int) -> None:
        del self.inbuf[:n]
        self._uncredited += n
        if self._uncredited >= WINDOW // 4 or (not self.inbuf and self._uncredited):
            grant, self._uncredited = self._uncredited, 0
            self.streams.ctx.send({"op": "stream-credit", "stream": self.id, "bytes": grant})

    def resize(self, rows: int, cols: int) -> None:
        """Only a terminal has a size."""

    # -- the end --------------------------------------------------------------------------

    def close(self, reason: str, *, refused: bool = False, tell: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        self.release()
        self.streams.forget(self)
        if tell:
            message = {"op": "stream-closed", "stream": self.id, "reason": reason}
            self.streams.ctx.send({**message, "refused": refused})

    def release(self) -> None:
        """Let go of the source (its descriptor, its terminal)."""


@dataclasses.dataclass(eq=False)
class RunnerStreams:
    """The open streams, and the ``stream-*`` messages of the agent."""

    ctx: RunnerContext
    flow: Flow
    _streams: dict[int, ByteStream] = dataclasses.field(default_factory=dict, init=False)
    _terminal: Any = dataclasses.field(default=None, init=False)

    def forget(self, stream: ByteStream) -> None:
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]

    def terminal(self) -> Any:
        """The kernel's one terminal, shared by all its clients."""
        if self._terminal is None:
            from .terminal import Terminal

            self._terminal = Terminal(self)
        return self._terminal

    def handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        stream_id = message.get("stream")
        if not isinstance(stream_id, int) or isinstance(stream_id, bool):
            return
        if op == "stream-open":
            self._open(stream_id, message)
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if op == "stream-data":
            try:
                data = base64.b64decode(str(message.get("data")), validate=True)
            except (binascii.Error, ValueError):
                stream.close("stream data that is no base64")
                return
            stream.received(data)
        elif op == "stream-credit":
            amount = message.get("bytes")
            if isinstance(amount, int) and amount > 0:
                stream.granted(amount)
        elif op == "stream-resize":
            rows, cols = message.get("rows"), message.get("cols")
            if _valid_size(rows, cols):
                stream.resize(rows, cols)  # type: ignore[arg-type]
        elif op == "stream-close":
            stream.close("closed by the agent", tell=False)

    def _open(self, stream_id: int, message: dict[str, Any]) -> None:
        kind, window = message.get("kind"), message.get("window")
        if stream_id in self._streams or not isinstance(window, int) or window <= 0:
            self._refuse(stream_id, "a bad stream-open")
            return
        stream: ByteStream
        if kind == "pty":
            rows, cols = message.get("rows"), message.get("cols")
            size = (rows, cols) if _valid_size(rows, cols) else (24, 80)
            stream = self.terminal().attach(stream_id, window, size)
        elif kind == "tcp":
            from .tunnel import TcpStream

            port, wait = message.get("port"), message.get("wait")
            if not isinstance(port, int) or not isinstance(wait, (int, float)):
                self._refuse(stream_id, "a bad port")
                return
            stream = TcpStream(self, stream_id, window, port, float(wait))
        else:
            self._refuse(stream_id, f"no kind {kind!r}")
            return
        self._streams[stream_id] = stream

    def _refuse(self, stream_id: int, reason: str) -> None:
        self.ctx.send({"op": "stream-closed", "stream": stream_id, "reason": reason})

    def opened(self, stream: ByteStream) -> None:
        self.ctx.send({"op": "stream-opened", "stream": stream.id, "window": WINDOW})

    def close_all(self) -> None:
        for stream in list(self._streams.values()):
            stream.close("the runner stops", tell=False)


def _valid_size(rows: object, cols: object) -> bool:
    return (
        isinstance(rows, int)
        and isinstance(cols, int)
        and 0 < rows <= MAX_ROWS
        and 0 < cols <= MAX_COLS
    )
