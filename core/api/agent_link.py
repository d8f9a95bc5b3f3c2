"""``/internal/agent``: the WebSocket agents dial (docs/internals.md)."""

from __future__ import annotations

import json
import logging
from typing import Any

import trio
from quart import Blueprint, websocket
from quart.wrappers import Websocket

from crucible.agents import AgentLink
from crucible.api.context import manager_context
from crucible.cluster_auth import HEADER_AGENT_ID, HEADER_DATE, HEADER_SIGNATURE, verify_agent

log = logging.getLogger(__name__)

blueprint = Blueprint("agent_link", __name__)

#: Agents send little besides heartbeats and download archives (at most 4 MiB of
#: content each, base64 in JSON: under 6 MiB); a larger frame is a bug or an attack.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@blueprint.websocket("/internal/agent")
async def agent_link() -> Any:
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
    link = AgentLink(agent_id, ws.send)
    directory = ctx.agents
    directory.attach(link)
    addr = str(websocket.remote_addr or "")
    log.info("agent %s linked from %s", agent_id, addr)
    try:
        async with trio.open_nursery() as nursery:
            while True:
                raw = await ws.receive()
                if isinstance(raw, bytes) or len(raw) > MAX_MESSAGE_BYTES:
                    log.warning("agent %s sent an unusable frame; dropping the link", agent_id)
                    break
                message = json.loads(raw)
                kind = message.get("type")
                if kind in ("result", "error"):
                    link.on_reply(message)
                elif kind == "heartbeat":
                    nursery.start_soon(directory.record_heartbeat, agent_id, addr, message)
                elif kind == "event":
                    nursery.start_soon(directory.handle_event, agent_id, message)
            nursery.cancel_scope.cancel()
    finally:
        directory.detach(link)
        log.info("agent %s unlinked", agent_id)
    return None
