"""``GET|PUT /manager/status`` (spec 8)."""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint

from crucible import errors
from crucible.api.body import json_body, optional_bool
from crucible.api.context import manager_context
from crucible.api.guard import admin_only, public
from crucible.manager.status import ManagerStatus

log = logging.getLogger(__name__)

blueprint = Blueprint("manager_status", __name__)

_SETTABLE = {ManagerStatus.RUNNING, ManagerStatus.FROZEN}


@blueprint.route("/manager/status", methods=["GET"])
@public
async def get_status() -> dict[str, Any]:
    ctx = manager_context()
    status = await ctx.status.get()
    return {"status": status.value, "active_sessions": await ctx.sessions.count_live()}


@blueprint.route("/manager/status", methods=["PUT"])
@admin_only
async def put_status() -> tuple[str, int]:
    ctx = manager_context()
    body = await json_body()
    raw_status = body.get("status")
    try:
        status = ManagerStatus(raw_status) if isinstance(raw_status, str) else None
    except ValueError:
        status = None
    if status not in _SETTABLE:
        raise errors.InvalidAPIParameters("'status' must be 'running' or 'frozen'.")
    force_kill = optional_bool(body, "force_kill", False)
    if force_kill:
        killed = await ctx.sessions.destroy_all()
        log.warning("force-killed %d session(s) before changing status to %s", killed, status)
    await ctx.status.set(status)
    log.info("manager status set to %s", status)
    return "", 204
