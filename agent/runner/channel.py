"""A non-blocking framed socket on the runner's loop (agent connection, Python child)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from . import framing
from .flow import Flow
from .loop import Loop

READ_CHUNK = 256 * 1024


class FramedSocket:
    """Frames in (to `on_message`) and out (buffered, written when the socket allows).

    With a `flow`, reading stops while the flow is paused: what arrives here is output
    headed for the agent. `on_sent` is called whenever the send buffer shrank.
    """

    def __init__(
        self,
        loop: Loop,
        sock: socket.socket,
        *,
        max_frame: int,
        on_message: Callable[[dict[str, Any] | framing.FrameError], None],
        on_close: Callable[[], None],
        flow: Flow | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        self.sock = sock
        self._fd = sock.fileno()
        self._decoder = framing.FrameDecoder(max_frame)
        self._on_message = on_message
        self._on_close = on_close
        self._flow = flow
        self._on_sent = on_sent
        self._out = bytearray()
        self.closed = False
        sock.setblocking(False)
        loop.add_reader(self._fd, self._readable)

    @property
    def unsent(self) -> int:
        return len(self._out)

    def send(self, message: dict[str, Any]) -> None:
        self.send_frame(framing.encode(message))

    def send_frame(self, frame: bytes) -> None:
        """Send an already encoded frame (`framing.encode`)."""
        if self.closed:
            return
        self._out += frame
        self._flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.forget(self._fd)
        self._out.clear()
        self.sock.close()
        self._on_close()

    def _flush(self) -> None:
        while self._out and not self.closed:
            try:
                sent = self.sock.send(self._out)
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self._fd, self._flush)
                return
            except OSError:
                self.close()
                return
            del self._out[:sent]
            if self._on_sent is not None:
                self._on_sent()
        if not self.closed:
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        if self._flow is not None and self._flow.paused:
            self._loop.remove_reader(self._fd)
            self._flow.wait(self._resume)
            return
        try:
            data = self.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        for message in self._decoder.feed(data):
            if self.closed:
                return
            self._on_message(message)

    def _resume(self) -> None:
        if not self.closed:
            self._loop.add_reader(self._fd, self._readable)
