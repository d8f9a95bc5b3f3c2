"""A tunnel connection (spec 5.5): a TCP connection from the runner to a service on the
container's own loopback, relayed over the agent socket. The container keeps no
network (``--network none`` still has ``lo``): nothing outside reaches the service but
through the session's owner's authenticated tunnel.

A refused connection is retried until `wait` seconds have passed (the service may
still be starting), then reported ``refused`` (the manager closes with code 1014).
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any

from .byte_streams import CHUNK, ByteStream, ReadGate, RunnerStreams

#: Seconds between connection attempts while the service does not accept.
RETRY_EVERY = 0.1


class TcpStream(ByteStream):
    def __init__(
        self, streams: RunnerStreams, stream_id: int, credit: int, port: int, wait: float
    ) -> None:
        super().__init__(streams, stream_id, credit)
        self.port = port
        self._deadline = time.monotonic() + max(0.0, wait)
        self.sock: socket.socket | None = None
        self._connected = False
        self._gate = ReadGate(streams, self._readable, self.output_allowed)
        self._writing = False
        self._timer: Any = None
        self._attempt()

    # -- connecting -------------------------------------------------------------------------

    def _attempt(self) -> None:
        self._timer = None
        if self.closed:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        self.sock = sock
        code = sock.connect_ex(("127.0.0.1", self.port))
        if code == 0:
            self._established()
        elif code in (errno.EINPROGRESS, errno.EAGAIN):
            self._writing = True
            self.streams.ctx.loop.add_writer(sock.fileno(), self._connect_done)
        else:
            self._failed(code)

    def _connect_done(self) -> None:
        assert self.sock is not None
        self.streams.ctx.loop.remove_writer(self.sock.fileno())
        self._writing = False
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            self._established()
        else:
            self._failed(code)

    def _failed(self, code: int) -> None:
        assert self.sock is not None
        self.sock.close()
        self.sock = None
        if code == errno.ECONNREFUSED and time.monotonic() < self._deadline:
            self._timer = self.streams.ctx.loop.call_later(RETRY_EVERY, self._attempt)
            return
        what = (
            "refused"
            if code == errno.ECONNREFUSED
            else f"failed ({errno.errorcode.get(code, code)})"
        )
        self.close(f"the connection to port {self.port} was {what}", refused=True)

    def _established(self) -> None:
        self._connected = True
        self.streams.opened(self)
        self.output_allowed()
        self.write_input()

    # -- bytes ------------------------------------------------------------------------------

    def output_allowed(self) -> None:
        if self.sock is None or not self._connected:
            return
        self._gate.set(self.sock.fileno(), self.credit > 0)

    def _readable(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(max(1, min(CHUNK, self.credit)))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"the service's connection broke ({exc.strerror})")
            return
        if not data:
            self.close("the service closed the connection")
            return
        self.emit(data)
        self.output_allowed()

    def write_input(self) -> None:
        if self.sock is None or not self._connected:
            return
        while self.inbuf:
            try:
                n = self.sock.send(self.inbuf)
            except (BlockingIOError, InterruptedError):
                if not self._writing:
                    self._writing = True
                    self.streams.ctx.loop.add_writer(self.sock.fileno(), self._writable)
                return
            except OSError as exc:
                self.close(f"the service's connection broke ({exc.strerror})")
                return
            self.written(n)
        if self._writing:
            self._writing = False
            self.streams.ctx.loop.remove_writer(self.sock.fileno())

    def _writable(self) -> None:
        self.write_input()

    def release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.sock is not None:
            self._gate.forget()
            self.streams.ctx.loop.forget(self.sock.fileno())
            self.sock.close()
            self.sock = None
