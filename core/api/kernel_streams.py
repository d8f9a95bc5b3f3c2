"""``/stream/kernel/:id/...``: WebSocket execution and session events (spec 5.2, 5.4);
the terminal and the app tunnels are `crucible.api.terminal` and `crucible.api.tunnels`."""

from __future__ import annotations

import json
import logging
from typing import Any

import trio
from quart import Blueprint, websocket

from crucible import errors
from crucible.api.context import manager_context
from crucible.api.guard import authenticate, count_message, current_keypair
from crucible.api.kernel import new_run_id
from crucible.protocol.calls import ExecuteMode
from crucible.sessions.model import Session
from crucible.sessions.requests import batch_options, check_code
from crucible.validation import parse_json

log = logging.getLogger(__name__)

blueprint = Blueprint("kernel_streams", __name__)

#: Statuses after which a streaming run is over.
FINAL = ("finished", "exec-timeout")


async def _send(frame: dict[str, Any]) -> None:
    await websocket.send(json.dumps(frame))


async def _authenticated_session(token: str) -> Session:
    """Authenticate and look up before the upgrade, so failures are plain HTTP errors."""
    keypair = await authenticate()
    return await manager_context().sessions.get_live(keypair.access_key, token)


@blueprint.websocket("/stream/kernel/<token>/execute")
async def stream_execute(token: str) -> None:
    session = await _authenticated_session(token)
    ctx = manager_context()
    sessions, limits = ctx.sessions, ctx.config.limits
    # Streaming clients get output more often than long-polling ones (legacy: ~0.2 s).
    flush_interval = ctx.config.sessions.stream_flush_interval
    await websocket.accept()
    try:
        first = parse_json(
            await websocket.receive(), max_depth=limits.max_json_depth, where="the first frame"
        )
        if not isinstance(first, dict) or first.get("mode") not in ("query", "batch"):
            raise errors.InvalidAPIParameters(
                "the first frame must be {'code', 'mode': 'query'|'batch', 'options'}"
            )
        mode: ExecuteMode = "batch" if first["mode"] == "batch" else "query"
        code = check_code(first.get("code"), limits)
        options: dict[str, Any] = (
            batch_options(first.get("options"), limits) if mode == "batch" else {}
        )
    except errors.InvalidAPIParameters as exc:
        await _send({"status": "error", "msg": exc.detail or exc.title})
        await websocket.close(1002)
        return
    count_message(current_keypair())
    run_id = new_run_id()
    finished = False
    try:
        while True:
            result = await sessions.execute(
                session,
                run_id=run_id,
                mode=mode,
                code=code,
                options=options if mode == "batch" else {},
                flush_interval=flush_interval,
            )
            frame = result.as_api()
            frame.pop("runId", None)
            await _send(frame)
            status = result.status
            if status in FINAL:
                finished = True
                break
            if status == "waiting-input":
                # The input arrives as a raw TEXT frame, not JSON (spec 5.2).
                code = check_code(str(await websocket.receive()), limits, "input")
                count_message(current_keypair())
                mode = "input"
            else:
                mode, code = "continue", ""
    except errors.ProblemError as exc:
        finished = True
        await _send({"status": "error", "msg": exc.detail or exc.title})
    finally:
        if not finished:
            # The client went away mid-run: stop this run (queued: it never starts;
            # running: interrupted, then killed), and only this one: an interrupt of
            # the session would hit whatever run happens to be executing. (If it left
            # during an execute call, sessions.execute did so already; twice is harmless.)
            with trio.CancelScope(shield=True):
                await sessions.cancel_run(session, run_id)
    await websocket.close(1000)


@blueprint.websocket("/stream/kernel/<token>/events")
async def stream_events(token: str) -> None:
    session = await _authenticated_session(token)
    sessions = manager_context().sessions
    with sessions.events.open_subscription(session.id) as events:
        await websocket.accept()
        # It may have ended (on another manager) between the lookup and the subscription:
        # then its end was published to nobody here. Said once, whichever way it came.
        reason = await sessions.ended_reason(session)
        if reason is not None:
            await _send({"name": "terminated", "reason": reason})
            await websocket.close(1000)
            return
        async for event in events:
            await _send(event)
            if event["name"] == "terminated":
                break
    await websocket.close(1000)
