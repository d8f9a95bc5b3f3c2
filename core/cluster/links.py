"""One agent's link, seen from the manager: calls out, their replies back."""

from __future__ import annotations

import itertools
from typing import Any, TypeVar

import attrs
import trio

from crucible.cluster.streams import AgentStreams, LinkStream, open_call
from crucible.protocol import codec
from crucible.protocol.calls import AgentCall
from crucible.protocol.codec import IncomingError, IncomingResult, ProtocolError
from crucible.protocol.failures import CallFailure, ErrorKind
from crucible.protocol.framing import TOO_LARGE, FramedLink, LinkClosed, MessageTooLarge

R = TypeVar("R")


class AgentUnreachable(Exception):
    """No link to that agent from this manager, or the link dropped during the call."""


@attrs.define
class AgentCallFailed(Exception):
    """The agent answered a call with an error (spec 1.7 ``agent-details``)."""

    kind: ErrorKind
    title: str
    exception: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}: {self.title}"

    @classmethod
    def from_failure(cls, failure: CallFailure) -> AgentCallFailed:
        kind = AgentMessageTooLarge if failure.kind == TOO_LARGE else AgentCallFailed
        return kind(failure.kind, failure.title, failure.exception)


class AgentMessageTooLarge(AgentCallFailed):
    """The call is larger than the link carries (here or at the agent): the request
    was too large, nothing ran."""


Answer = IncomingResult | IncomingError


class AgentLink:
    """One agent's link, seen from the manager: calls out, results back."""

    def __init__(self, agent_id: str, link: FramedLink) -> None:
        self.agent_id = agent_id
        self._link = link
        self._ids = itertools.count(1)
        self._pending: dict[int, trio.MemorySendChannel[Answer]] = {}
        self.closed = False
        #: Terminals and tunnels open on this link (`crucible.cluster.streams`).
        self.streams = AgentStreams(agent_id, link.send)

    async def open_stream(
        self, *, window: int, chunk_bytes: int, timeout: float, **fields: Any
    ) -> LinkStream:
        """Open a stream (`crucible.protocol.streams.OpenStream`'s `fields`); raises
        what `call` raises, the stream forgotten."""
        stream = self.streams.new(window=window, chunk_bytes=chunk_bytes)
        try:
            reply = await self.call(open_call(stream, **fields), timeout=timeout)
        except BaseException:
            self.streams.forget(stream)
            stream.flow.end("not opened")
            raise
        self.streams.opened(stream, reply)
        return stream

    async def call(self, call: AgentCall[R], *, timeout: float) -> R:
        """Make `call` of the agent and return its reply; the whole call (sending
        included) takes at most `timeout` seconds (`trio.TooSlowError`)."""
        if self.closed:
            raise AgentUnreachable(self.agent_id)
        call_id = next(self._ids)
        send, receive = trio.open_memory_channel[Answer](1)
        self._pending[call_id] = send
        try:
            with trio.fail_after(timeout):
                try:
                    await self._link.send(codec.call_message(call_id, call), ref=call_id)
                except MessageTooLarge as exc:
                    raise AgentMessageTooLarge(TOO_LARGE, f"the {call.method} call: {exc}") from exc
                except LinkClosed as exc:
                    raise AgentUnreachable(self.agent_id) from exc
                try:
                    answer = await receive.receive()
                except trio.EndOfChannel:
                    raise AgentUnreachable(self.agent_id) from None
        finally:
            self._pending.pop(call_id, None)
        if isinstance(answer, IncomingError):
            raise AgentCallFailed.from_failure(answer.failure)
        try:
            return codec.read_result(answer, call)
        except ProtocolError as exc:
            raise AgentCallFailed(ErrorKind.AGENT_FAILURE, f"the agent's answer: {exc}") from exc

    def on_reply(self, answer: Answer) -> None:
        channel = self._pending.pop(answer.id, None)
        if channel is not None:
            channel.send_nowait(answer)
            channel.close()

    def on_refused(self, ref: int, reason: str) -> None:
        """A reply the link could not take (too large, malformed, not fitting the
        protocol): its call fails."""
        title = f"the agent's answer was refused: {reason}"
        self.on_reply(IncomingError(ref, CallFailure(ErrorKind.AGENT_FAILURE, title)))

    def close(self) -> None:
        self.closed = True
        self.streams.close_all("the agent's link went down")
        for channel in self._pending.values():
            channel.close()
        self._pending.clear()
