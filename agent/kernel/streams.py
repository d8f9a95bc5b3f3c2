"""A kernel's byte streams on its runner socket: the terminal and tunnel connections.

The agent numbers the streams of a kernel itself (several managers' links may each
have a stream 1); each `RunnerStream` holds a `StreamFlow` of its own with the runner,
so the runner never has more than one window of a stream's bytes in the agent. The
runner is untrusted: a message that breaks a stream's rules (not base64, over the
window, a credit that is no positive integer) ends that stream, nothing else.

Runner messages (docs/internals.md, "Agent ↔ kernel runner")::

    agent → runner  stream-open {stream, kind, rows, cols, port, wait, window}
                    stream-data {stream, data} · stream-credit {stream, bytes}
                    stream-resize {stream, rows, cols} · stream-close {stream}
    runner → agent  stream-opened {stream, window} · stream-data · stream-credit
                    stream-closed {stream, reason, refused}
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from crucible.protocol.stream_flow import StreamEnded, StreamFlow, WindowExceeded

log = logging.getLogger(__name__)

SendToRunner = Callable[[dict[str, Any]], Awaitable[None]]

#: A credit larger than this from the runner is nonsense.
_MAX_CREDIT = 1 << 31
#: Seconds beyond its own wait a runner may take to answer a stream-open.
OPEN_MARGIN = 5.0


class StreamRefused(Exception):
    """The stream could not be opened; `refused`: the service did not accept."""

    def __init__(self, reason: str, *, refused: bool = False, too_many: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused
        self.too_many = too_many


class RunnerStream:
    """One stream's runner end."""

    def __init__(self, stream_id: int, send: SendToRunner, *, window: int, chunk: int) -> None:
        self.id = stream_id
        self._send = send
        self._chunk = chunk
        self.flow = StreamFlow(receive_window=window)
        self.opened = trio.Event()

    async def send(self, data: bytes) -> None:
        async def one(chunk: bytes) -> None:
            await self._send(
                {"op": "stream-data", "stream": self.id, "data": base64.b64encode(chunk).decode()}
            )

        await self.flow.send_all(data, self._chunk, one)

    async def passed_on(self, n: int) -> None:
        grant = self.flow.consumed(n)
        if grant and self.flow.ending is None:
            await self._send({"op": "stream-credit", "stream": self.id, "bytes": grant})

    async def resize(self, rows: int, cols: int) -> None:
        if self.flow.ending is None:
            await self._send({"op": "stream-resize", "stream": self.id, "rows": rows, "cols": cols})

    async def close(self, reason: str) -> None:
        if self.flow.ending is None:
            self.flow.end(reason)
            await self._send({"op": "stream-close", "stream": self.id})


class KernelStreams:
    """The streams of one kernel's runner connection."""

    def __init__(self, kernel_id: str, *, max_streams: int, window: int, chunk: int) -> None:
        self.kernel_id = kernel_id
        self._max = max_streams
        self._window = window
        self._chunk = chunk
        self._send: SendToRunner | None = None
        self._ids = itertools.count(1)
        self._streams: dict[int, RunnerStream] = {}

    def connected(self, send: SendToRunner) -> None:
        self._send = send

    def _sender(self) -> SendToRunner:
        if self._send is None:
            raise StreamRefused("the kernel's runner is not connected")
        return self._send

    async def open(
        self, kind: str, *, rows: int, cols: int, port: int, wait: float, timeout: float
    ) -> RunnerStream:
        send = self._sender()
        if len(self._streams) >= self._max:
            raise StreamRefused(
                f"the kernel has {self._max} streams open, as many as it may", too_many=True
            )
        stream = RunnerStream(next(self._ids), send, window=self._window, chunk=self._chunk)
        self._streams[stream.id] = stream
        try:
            with trio.move_on_after(timeout + wait + OPEN_MARGIN) as scope:
                await send(
                    {
                        "op": "stream-open",
                        "stream": stream.id,
                        "kind": kind,
                        "rows": rows,
                        "cols": cols,
                        "port": port,
                        "wait": wait,
                        "window": self._window,
                    }
                )
                while not stream.opened.is_set() and stream.flow.ending is None:
                    await stream.flow.changed()
            ending = stream.flow.ending
            if scope.cancelled_caught or ending is not None:
                reason = ending.reason if ending else "the kernel did not open the stream in time"
                raise StreamRefused(reason, refused=bool(ending and ending.refused))
        except BaseException:
            self._streams.pop(stream.id, None)
            stream.flow.end("not opened")
            raise
        return stream

    def forget(self, stream: RunnerStream) -> None:
        self._streams.pop(stream.id, None)

    def handle(self, message: dict[str, Any]) -> None:
        """A runner message about streams (its ``op`` starts with ``stream-``)."""
        op = message.get("op")
        stream_id = message.get("stream")
        stream = self._streams.get(stream_id) if isinstance(stream_id, int) else None
        if stream is None:
            return  # closed here already
        problem = _apply(stream, op, message)
        if problem is not None:
            log.warning("kernel %s: stream %d: %s", self.kernel_id, stream.id, problem)
            stream.flow.end(f"the kernel broke the stream: {problem}")

    def close_all(self, reason: str) -> None:
        for stream in self._streams.values():
            stream.flow.end(reason)
        self._streams.clear()


def _apply(stream: RunnerStream, op: object, message: dict[str, Any]) -> str | None:
    """Apply one runner message to `stream`; a problem, if it breaks the rules."""
    if op == "stream-data":
        data = message.get("data")
        if not isinstance(data, str) or len(data) > 2 * stream.flow.receive_window:
            return "stream data that is no bounded string"
        try:
            stream.flow.take(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError) as exc:
            return f"stream data that is no base64 ({exc})"
        except WindowExceeded as exc:
            return str(exc)
    elif op in ("stream-credit", "stream-opened"):
        key = "bytes" if op == "stream-credit" else "window"
        amount = message.get(key)
        if type(amount) is not int or not 0 < amount < _MAX_CREDIT:
            return f"{op} with {key} {amount!r:.40}"
        stream.flow.grant(amount)
        if op == "stream-opened":
            stream.opened.set()
    elif op == "stream-closed":
        reason = message.get("reason")
        stream.flow.end(str(reason)[:500] or "closed", refused=message.get("refused") is True)
    else:
        return f"unknown op {op!r:.40}"
    return None


__all__ = ["KernelStreams", "RunnerStream", "StreamEnded", "StreamRefused"]
