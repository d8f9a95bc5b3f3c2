"""The manager's view of its agents: live links, heartbeats and lost-agent detection."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio

from crucible.db.pool import Database
from crucible.db.queries import agents
from crucible.protocol import codec
from crucible.protocol.calls import AgentCall
from crucible.protocol.codec import IncomingError, IncomingResult, ProtocolError
from crucible.protocol.failures import CallFailure, ErrorKind
from crucible.protocol.framing import TOO_LARGE, FramedLink, LinkClosed, MessageTooLarge
from crucible.protocol.reports import AgentEvent, Heartbeat

log = logging.getLogger(__name__)

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
        for channel in self._pending.values():
            channel.close()
        self._pending.clear()


HeartbeatHandler = Callable[[str, Heartbeat], Awaitable[None]]
EventHandler = Callable[[str, AgentEvent], Awaitable[None]]


class AgentDirectory:
    """Links from this manager process to agents, and agent rows in the database."""

    def __init__(self, db: Database, *, lost_after: float, scan_interval: float) -> None:
        self.db = db
        #: An agent is lost after `lost_after` seconds without a heartbeat; the scans
        #: for such agents are `scan_interval` seconds apart.
        self.lost_after = lost_after
        self.scan_interval = scan_interval
        self.links: dict[str, AgentLink] = {}
        self._links_changed = trio.Event()
        self._reported: set[str] = set()
        self._reports_changed = trio.Event()
        #: Called with (agent_id, event) for agent events; set by the session registry.
        self.on_event: EventHandler | None = None
        #: Called with (agent_id, heartbeat) after the agent row is updated.
        self.on_heartbeat: HeartbeatHandler | None = None
        #: Called with the ids of agents just marked lost.
        self.on_lost: Callable[[list[str]], Awaitable[None]] | None = None

    def attach(self, link: AgentLink) -> None:
        old = self.links.get(link.agent_id)
        if old is not None:
            old.close()
        self.links[link.agent_id] = link
        self._links_changed.set()
        self._links_changed = trio.Event()

    def detach(self, link: AgentLink) -> None:
        link.close()
        if self.links.get(link.agent_id) is link:
            del self.links[link.agent_id]

    def link(self, agent_id: str) -> AgentLink:
        link = self.links.get(agent_id)
        if link is None:
            raise AgentUnreachable(agent_id)
        return link

    async def wait_linked(self, agent_id: str | None = None) -> None:
        """Wait until `agent_id` (or any agent) has a link here."""
        while not (self.links if agent_id is None else agent_id in self.links):
            await self._links_changed.wait()

    async def wait_reported(self) -> None:
        """Wait until some linked agent's heartbeat (with its images) is recorded."""
        while not any(agent_id in self.links for agent_id in self._reported):
            await self._reports_changed.wait()

    async def record_heartbeat(self, agent_id: str, addr: str, heartbeat: Heartbeat) -> None:
        info = heartbeat.agent
        await agents.record_heartbeat(
            self.db,
            agent_id,
            addr=addr,
            version=str(info.version),
            capacity=info.capacity,
            images=codec.unstructure(info.images),
        )
        if agent_id not in self._reported:
            self._reported.add(agent_id)
            self._reports_changed.set()
            self._reports_changed = trio.Event()
        if self.on_heartbeat is not None:
            await self.on_heartbeat(agent_id, heartbeat)

    async def handle_event(self, agent_id: str, event: AgentEvent) -> None:
        if self.on_event is not None:
            await self.on_event(agent_id, event)

    async def mark_lost(self) -> list[str]:
        lost = await agents.mark_lost(self.db, self.lost_after)
        if lost:
            log.warning("agents lost (no heartbeat for %s s): %s", self.lost_after, lost)
            if self.on_lost is not None:
                await self.on_lost(lost)
        return lost

    async def run_lost_detector(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.scan_interval)
            try:
                await self.mark_lost()
            except Exception:
                log.exception("lost-agent scan failed")
