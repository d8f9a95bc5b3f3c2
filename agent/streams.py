"""Byte streams between one manager link and the agent's kernels (terminals, tunnels).

`LinkStreams` lives as long as one manager link: it answers `OpenStream` calls and
takes the manager's stream messages. Each open stream is relayed by two pumps, one per
direction, between two `StreamFlow`s (the manager's side and the runner's,
`crucible.agent.kernel.streams`): a pump passes bytes on only within the credit the
far side granted and grants the near side more only once they are passed on, so one
stream holds at most a window per side here, however fast either end floods, and a
stalled stream stalls nobody else. Anything that ends one side ends the other.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from crucible.agent.calls import AgentCallError, live_kernel
from crucible.agent.kernel.runner_link import RunnerGone
from crucible.agent.kernel.streams import KernelStreams, RunnerStream, StreamRefused
from crucible.agent.kernel.supervisor import KernelSupervisor
from crucible.config import StreamsConfig
from crucible.protocol.failures import ErrorKind
from crucible.protocol.framing import LinkClosed
from crucible.protocol.stream_end import SendMessage, StreamEnd
from crucible.protocol.stream_flow import StreamEnded, StreamFlow
from crucible.protocol.streams import (
    OpenStream,
    StreamMessage,
    StreamOpened,
    StreamResize,
    valid_size,
)

log = logging.getLogger(__name__)


class _Relay(StreamEnd):
    """One stream: the manager's side (`flow`) and the kernel's (`runner`)."""

    def __init__(
        self, call: OpenStream, runner: RunnerStream, send: SendMessage, config: StreamsConfig
    ) -> None:
        flow = StreamFlow(receive_window=config.window_bytes, send_credit=call.window)
        super().__init__(call.stream, send, flow, chunk_bytes=config.chunk_bytes)
        self.runner = runner

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._down, nursery.cancel_scope)
                nursery.start_soon(self._up, nursery.cancel_scope)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self._end()

    async def _end(self) -> None:
        runner_end, manager_end = self.runner.flow.ending, self.flow.ending
        if manager_end is None:
            reason = runner_end.reason if runner_end else "closed by the agent"
            self.flow.end(reason)
            await self.tell_closed(reason, refused=bool(runner_end and runner_end.refused))
        if runner_end is None:
            with contextlib.suppress(RunnerGone):
                await self.runner.close(manager_end.reason if manager_end else "closed")

    async def _down(self, scope: trio.CancelScope) -> None:
        """Kernel → manager."""
        with contextlib.suppress(StreamEnded, LinkClosed, RunnerGone):
            while data := await self.runner.flow.receive():
                await self.send_bytes(data)
                await self.runner.passed_on(len(data))
        scope.cancel()

    async def _up(self, scope: trio.CancelScope) -> None:
        """Manager → kernel."""
        with contextlib.suppress(StreamEnded, LinkClosed, RunnerGone):
            while data := await self.flow.receive():
                await self.runner.send(data)
                await self.grant_consumed(len(data))
        scope.cancel()


class LinkStreams:
    """The streams one manager link opened."""

    def __init__(
        self,
        kernels: Mapping[str, KernelSupervisor],
        config: StreamsConfig,
        send: SendMessage,
        nursery: trio.Nursery,
    ) -> None:
        self._kernels = kernels
        self._config = config
        self._send = send
        self._nursery = nursery
        self._relays: dict[int, _Relay] = {}

    async def open(self, call: OpenStream) -> StreamOpened:
        if call.stream in self._relays or call.window <= 0 or call.wait < 0:
            raise AgentCallError("a stream id in use, or a bad window", ErrorKind.INVALID_INPUT)
        if call.kind == "pty" and not valid_size(call.rows, call.cols):
            raise AgentCallError("a terminal size out of range", ErrorKind.INVALID_INPUT)
        if call.kind == "tcp" and not 0 < call.port < 65536:
            raise AgentCallError(f"no port {call.port}", ErrorKind.INVALID_INPUT)
        supervisor = live_kernel(self._kernels, call.kernel_id)
        streams, timeout = supervisor.streams, self._config.open_timeout
        try:
            runner = await streams.open(
                call.kind,
                rows=call.rows,
                cols=call.cols,
                port=call.port,
                wait=call.wait,
                timeout=timeout,
            )
        except StreamRefused as exc:
            kind = (
                ErrorKind.SERVICE_REFUSED
                if exc.refused
                else ErrorKind.TOO_MANY_STREAMS
                if exc.too_many
                else ErrorKind.AGENT_FAILURE
            )
            raise AgentCallError(str(exc), kind) from exc
        relay = _Relay(call, runner, self._send, self._config)
        self._relays[relay.id] = relay
        self._nursery.start_soon(self._run, relay, streams)
        return StreamOpened(self._config.window_bytes)

    async def _run(self, relay: _Relay, streams: KernelStreams) -> None:
        try:
            await relay.run()
        finally:
            self._relays.pop(relay.id, None)
            streams.forget(relay.runner)

    def deliver(self, message: StreamMessage) -> None:
        """A stream message from the manager."""
        relay = self._relays.get(message.stream)
        if relay is None:
            return  # ended here; the manager's last messages cross ours
        if isinstance(message, StreamResize):
            if valid_size(message.rows, message.cols):
                self._nursery.start_soon(_quietly, relay.runner.resize, message.rows, message.cols)
        elif (broken := relay.take(message)) is not None:
            log.warning("stream %d from the manager: %s", relay.id, broken)
            relay.flow.end(f"the manager broke the stream: {broken}")

    def close_all(self) -> None:
        for relay in self._relays.values():
            relay.flow.end("the manager's link went down")


async def _quietly(fn: Callable[..., Awaitable[None]], *args: Any) -> None:
    with contextlib.suppress(RunnerGone):
        await fn(*args)
