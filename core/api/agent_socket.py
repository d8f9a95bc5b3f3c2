"""``/internal/agent``: the WebSocket agents dial (docs/internals.md).

Messages travel in bounded frames (`crucible.protocol.framing`) and are read strictly
(`crucible.protocol.codec`): one that does not fit fails the call it answers, or is
dropped with a warning, and the link goes on. Whatever ends a link (the agent went
away, a frame that breaks the protocol, a bug in a handler), the calls in flight on it
fail with `AgentUnreachable` and the agent may link again at once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from quart import Blueprint, websocket
from quart.wrappers import Websocket

from crucible.api.context import manager_context
from crucible.cluster.directory import AgentDirectory
from crucible.cluster.links import AgentLink
from crucible.exc_groups import describe
from crucible.protocol import codec, framing
from crucible.protocol.auth import HEADER_AGENT_ID, HEADER_DATE, HEADER_SIGNATURE, verify_agent
from crucible.protocol.reports import Heartbeat
from crucible.protocol.streams import STREAM_OPS

log = logging.getLogger(__name__)

blueprint = Blueprint("agent_socket", __name__)

STREAM_MESSAGES = tuple(STREAM_OPS.values())


class _QuartFrames:
    """A Quart websocket as a `FrameTransport`."""

    def __init__(self, ws: Websocket) -> None:
        self._ws = ws

    async def send_frame(self, frame: bytes) -> None:
        await self._ws.send(frame)

    async def receive_frame(self) -> bytes:
        data = await self._ws.receive()
        if not isinstance(data, bytes):
            raise framing.LinkBroken("a TEXT frame: the agent speaks another link protocol")
        limit = framing.MAX_WIRE_FRAME
        if len(data) > limit:
            raise framing.LinkBroken(f"a frame of {len(data)} bytes (at most {limit})")
        return data


@blueprint.websocket("/internal/agent")
async def agent_socket() -> Any:
    ctx = manager_context()
    headers = websocket.headers
    agent_id = headers.get(HEADER_AGENT_ID, "")
    if not (
        agent_id
        and ctx.cluster_secret
        and verify_agent(
            ctx.cluster_secret,
            agent_id,
            headers.get(HEADER_DATE, ""),
            headers.get(HEADER_SIGNATURE, ""),
        )
    ):
        log.warning("refused an agent link from %s (bad credentials)", websocket.remote_addr)
        return "agent authentication failed", 401
    await websocket.accept()
    # The proxy resolves per task; callers in other tasks need the object itself.
    ws: Websocket = websocket._get_current_object()  # type: ignore[attr-defined]
    limits = framing.LinkLimits.from_config(ctx.config.cluster)
    framed = framing.FramedLink(_QuartFrames(ws), limits)
    link = AgentLink(agent_id, framed)
    directory = ctx.agents
    directory.attach(link)
    addr = str(websocket.remote_addr or "")
    log.info("agent %s linked from %s", agent_id, addr)
    try:
        async with trio.open_nursery() as nursery:
            deliver = functools.partial(_deliver, nursery, directory, link, addr)
            await framed.serve(deliver)
    except* framing.LinkClosed as group:
        log.warning("agent %s link dropped: %s", agent_id, describe(group))
    except* Exception as group:
        log.error("agent %s link failed", agent_id, exc_info=group)
    finally:
        directory.detach(link)
        log.info("agent %s unlinked", agent_id)
    return None


def _deliver(
    nursery: trio.Nursery,
    directory: AgentDirectory,
    link: AgentLink,
    addr: str,
    delivery: framing.Delivery,
) -> None:
    agent_id = link.agent_id
    if isinstance(delivery, framing.Refused):
        log.warning("refused a message from agent %s: %s", agent_id, delivery.reason)
        if delivery.ref:
            link.on_refused(delivery.ref, delivery.reason)
        return
    try:
        message = codec.read_from_agent(delivery.message)
    except codec.ProtocolError as exc:
        # One message that does not fit fails its call, if it answers one; the link stays.
        log.warning("dropped a message from agent %s: %s", agent_id, exc)
        if exc.call_id is not None:
            link.on_refused(exc.call_id, str(exc))
        return
    if isinstance(message, (codec.IncomingResult, codec.IncomingError)):
        link.on_reply(message)
    elif isinstance(message, STREAM_MESSAGES):
        link.streams.deliver(message, nursery)
    elif isinstance(message, Heartbeat):
        nursery.start_soon(_logged, agent_id, directory.record_heartbeat, agent_id, addr, message)
    else:
        nursery.start_soon(_logged, agent_id, directory.handle_event, agent_id, message)


async def _logged(agent_id: str, handler: Callable[..., Awaitable[None]], *args: Any) -> None:
    # A heartbeat that cannot be recorded now (the database is slow, the message is
    # odd) is a missed heartbeat, not a reason to drop the agent's link.
    try:
        await handler(*args)
    except Exception:
        log.exception("could not handle a message from agent %s", agent_id)
