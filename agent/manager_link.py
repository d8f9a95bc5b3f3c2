"""The agent's links to its managers: one WebSocket per manager, redialled forever.

Over each link the agent sends heartbeats and events, and answers calls; every call
runs in its own task so a long-polling execute never blocks another call. Messages
travel in bounded frames (`crucible.protocol.framing`) and are read strictly
(`crucible.protocol.codec`): a call that does not fit (unknown method, unknown or
mistyped fields) is answered ``agent-invalid-input``, anything else that does not fit
is dropped with a warning. A link that fails for whatever reason (the manager went
away, a frame the agent cannot use, a bug in a call) is logged and dialled again with
a backoff: it never takes the agent down.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import traceback
from collections.abc import Mapping
from typing import Any, Protocol

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from crucible.agent.calls import AgentCallError
from crucible.agent.events import EventSink
from crucible.agent.kernel.supervisor import KernelSupervisor
from crucible.agent.streams import LinkStreams
from crucible.config import Config
from crucible.exc_groups import describe
from crucible.protocol import codec
from crucible.protocol.auth import agent_headers
from crucible.protocol.calls import CallTable, reply_type
from crucible.protocol.failures import CallFailure, ErrorKind
from crucible.protocol.framing import (
    MAX_WIRE_FRAME,
    Delivery,
    FramedLink,
    LinkBroken,
    LinkClosed,
    LinkLimits,
    MessageTooLarge,
    Refused,
)
from crucible.protocol.reports import AgentEvent, Heartbeat
from crucible.protocol.streams import OpenStream

log = logging.getLogger(__name__)

#: Manager endpoint agents dial.
AGENT_LINK_PATH = "/internal/agent"
#: Failures that only mean "the manager is not there (now)": logged without traceback.
LINK_DOWN = (
    OSError,
    HandshakeError,
    ConnectionClosed,
    ConnectionTimeout,
    DisconnectionTimeout,
    LinkClosed,
)


class LinkedAgent(Protocol):
    """What a link needs of the agent it serves."""

    id: str
    config: Config

    @property
    def kernels(self) -> Mapping[str, KernelSupervisor]: ...

    def heartbeat(self) -> Heartbeat: ...

    def calls(self) -> CallTable: ...

    def add_event_sink(self, sink: EventSink) -> None: ...

    def remove_event_sink(self, sink: EventSink) -> None: ...


class _WebSocketFrames:
    """A trio-websocket connection as a `FrameTransport`."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws

    async def send_frame(self, frame: bytes) -> None:
        try:
            await self._ws.send_message(frame)
        except ConnectionClosed as exc:
            raise LinkClosed(f"the manager closed the link ({exc.reason})") from exc

    async def receive_frame(self) -> bytes:
        try:
            data = await self._ws.get_message()
        except ConnectionClosed as exc:
            raise LinkClosed(f"the manager closed the link ({exc.reason})") from exc
        if not isinstance(data, bytes):
            raise LinkBroken("a TEXT frame: the manager speaks another link protocol")
        return data


class ManagerLink:
    def __init__(self, agent: LinkedAgent, url: str, secret: str) -> None:
        self.agent = agent
        self.url = url.rstrip("/") + AGENT_LINK_PATH
        self.secret = secret
        self.limits = LinkLimits.from_config(agent.config.cluster)
        dialling = agent.config.agent
        self._connect_timeout = dialling.manager_connect_timeout
        self._disconnect_timeout = dialling.manager_disconnect_timeout
        #: Seconds before each new attempt after consecutive failures (the last repeats).
        self._reconnect_delays = dialling.manager_reconnect_delays
        self._link: FramedLink | None = None
        self._streams: LinkStreams | None = None
        #: Whether the current attempt got as far as a working link.
        self._linked = False
        self.connected = trio.Event()
        self._started = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a link up until cancelled; `task_status` fires on the first connect attempt."""
        attempt = 0
        while True:
            self._linked = False
            try:
                await self._serve_once(task_status)
            except* LINK_DOWN as group:
                log.info("link to %s down: %s", self.url, describe(group))
            except* Exception as group:
                # A bug (here or in a call): the link is redialled, the agent stays up.
                log.error("link to %s failed", self.url, exc_info=group)
            if not self._started:
                # Managers may come up later: the agent does not wait for them.
                self._started = True
                task_status.started()
            if self._linked:
                attempt = 0  # it was up: the manager may be back at once
            delays = self._reconnect_delays
            await trio.sleep(delays[min(attempt, len(delays) - 1)])
            attempt += 1

    async def _serve_once(self, task_status: trio.TaskStatus[None]) -> None:
        """One link, until it fails (this always raises)."""
        headers = [(k.encode(), v.encode()) for k, v in agent_headers(self.secret, self.agent.id)]
        async with open_websocket_url(
            self.url,
            extra_headers=headers,
            connect_timeout=self._connect_timeout,
            disconnect_timeout=self._disconnect_timeout,
            max_message_size=MAX_WIRE_FRAME,
        ) as ws:
            link = FramedLink(_WebSocketFrames(ws), self.limits)
            async with trio.open_nursery() as nursery:
                streams = LinkStreams(
                    self.agent.kernels, self.agent.config.streams, link.send, nursery
                )
                nursery.start_soon(link.serve, functools.partial(self._deliver, nursery, streams))
                self._link = link
                self._streams = streams
                self.agent.add_event_sink(self.send)
                try:
                    await link.send(codec.heartbeat_message(self.agent.heartbeat()))
                    self._linked = True
                    self.connected.set()
                    log.info("linked to manager %s", self.url)
                    if not self._started:
                        self._started = True
                        task_status.started()
                    await self._heartbeats(link)
                finally:
                    streams.close_all()
                    self.agent.remove_event_sink(self.send)
                    self._link = None
                    self._streams = None
                    self.connected = trio.Event()

    async def send(self, event: AgentEvent) -> None:
        """Send an event; `LinkClosed` when there is no link now."""
        link = self._link
        if link is None:
            raise LinkClosed("not linked")
        await link.send(codec.event_message(event))

    async def _heartbeats(self, link: FramedLink) -> None:
        interval = self.agent.config.agent.heartbeat_interval
        while True:
            await trio.sleep(interval)
            try:
                await link.send(codec.heartbeat_message(self.agent.heartbeat()))
            except MessageTooLarge as exc:
                log.error("a heartbeat was not sent: %s", exc)

    def _deliver(self, nursery: trio.Nursery, streams: LinkStreams, delivery: Delivery) -> None:
        if isinstance(delivery, Refused):
            log.warning("refused a message from %s: %s", self.url, delivery.reason)
            if delivery.ref:
                failure = CallFailure(delivery.kind, delivery.reason)
                reply = codec.error_message(delivery.ref, failure)
                nursery.start_soon(self._reply, delivery.ref, reply)
            return
        if codec.is_stream(delivery.message):
            # In order and at once, never a task each: the stream's window bounds it.
            try:
                streams.deliver(codec.read_stream(delivery.message))
            except codec.ProtocolError as exc:
                log.warning("dropped a stream message from %s: %s", self.url, exc)
            return
        nursery.start_soon(self._answer, delivery.message, delivery.ref)

    async def _answer(self, message: dict[str, Any], ref: int) -> None:
        try:
            incoming = codec.read_call(message)
        except codec.ProtocolError as exc:
            log.warning("refused a message from %s: %s", self.url, exc)
            # The frame's ref names the call when the message's own id is unreadable.
            call_id = exc.call_id if exc.call_id is not None else ref
            if call_id:
                failure = CallFailure(ErrorKind.INVALID_INPUT, str(exc))
                await self._reply(ref, codec.error_message(call_id, failure))
            return
        call_id, call = incoming.id, incoming.call
        try:
            if isinstance(call, OpenStream) and self._streams is not None:
                # A stream belongs to the link it was opened on.
                answer = codec.result_message(call_id, await self._streams.open(call))
                await self._reply(ref, answer)
                return
            handler = self.agent.calls().handler(call)
            if handler is None:
                refusal = f"this agent takes no {call.method} calls"
                raise AgentCallError(refusal, ErrorKind.INVALID_INPUT)
            reply = await handler(call)
            if not isinstance(reply, reply_type(call)):
                raise TypeError(f"{call.method} answered a {type(reply).__name__}")
            answer = codec.result_message(call_id, reply)
        except AgentCallError as exc:
            answer = codec.error_message(call_id, CallFailure(exc.kind, str(exc)))
        except Exception as exc:
            log.exception("call %s failed", call.method)
            answer = _failure(call_id, f"{type(exc).__name__}: {exc}", exc)
        await self._reply(ref, answer)

    async def _reply(self, ref: int, reply: dict[str, Any]) -> None:
        link = self._link
        if link is None:
            log.info("could not answer call %s: the link is down", reply["id"])
            return
        try:
            try:
                await link.send(reply, ref=ref)
            except MessageTooLarge as exc:
                # Every result is bounded well below the limit; this is a bug, not a peer.
                log.error("the answer to call %s is too large: %s", reply["id"], exc)
                # The agent's failure, not the request's: no `message-too-large` (a 413).
                failure = CallFailure(ErrorKind.AGENT_FAILURE, f"the agent's answer: {exc}")
                await link.send(codec.error_message(reply["id"], failure), ref=ref)
        except LinkClosed:
            log.info("could not answer call %s: the link is down", reply["id"])
        except (TypeError, ValueError) as exc:
            # A result that is not JSON: a bug in the call; the manager still hears of it.
            log.exception("could not encode the answer to call %s", reply["id"])
            with contextlib.suppress(LinkClosed):
                unsent = _failure(reply["id"], "the answer could not be encoded", exc)
                await link.send(unsent, ref=ref)


def _failure(call_id: int, title: str, exc: BaseException) -> dict[str, Any]:
    exception = "".join(traceback.format_exception_only(exc)).strip()
    return codec.error_message(call_id, CallFailure(ErrorKind.AGENT_FAILURE, title, exception))
