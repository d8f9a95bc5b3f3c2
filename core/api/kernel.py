"""``/kernel...``: sessions over REST (spec 4.1-4.8, 4.12)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from quart import Blueprint

from crucible import errors
from crucible.api.body import json_body
from crucible.api.context import manager_context
from crucible.api.guard import authenticated, current_keypair, requires_running
from crucible.protocol.stats import KernelStats
from crucible.sessions.model import Session
from crucible.sessions.requests import (
    batch_options,
    check_code,
    check_environ,
    check_lang,
    check_run_id,
    check_tag,
    check_token,
    complete_options,
)
from crucible.sessions.resources import requested_resources
from crucible.vfolders.paths import parse_mounts

blueprint = Blueprint("kernel", __name__)

EXECUTE_MODES = ("query", "batch", "continue", "input", "complete")


async def _session(token: str) -> Session:
    return await manager_context().sessions.get_live(current_keypair().access_key, token)


def new_run_id() -> str:
    return uuid.uuid4().hex


@blueprint.route("/kernel", methods=["POST"])
@blueprint.route("/kernel/create", methods=["POST"])
@authenticated
@requires_running
async def create() -> tuple[dict[str, Any], int]:
    ctx = manager_context()
    body = await json_body()
    if body.get("lang") is None:
        raise errors.InvalidAPIParameters("'lang' is required.")
    if body.get("clientSessionToken") is None:
        raise errors.InvalidAPIParameters("'clientSessionToken' is required.")
    lang = check_lang(body["lang"])
    token = check_token(body["clientSessionToken"])
    tag = check_tag(body.get("tag"))
    config = body.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise errors.InvalidAPIParameters("'config' must be an object.")
    # Everything is checked, whether or not the session exists already.
    environ = check_environ(config.get("environ"), ctx.config.limits)
    mounts = parse_mounts(config.get("mounts"))
    requested_resources(config)
    session, created = await ctx.sessions.create(
        current_keypair(),
        token,
        lang,
        tag=tag,
        environ=environ,
        mounts=mounts,
        creation_config=config,
    )
    return {
        "kernelId": session.token,
        "created": created,
        "servicePorts": [port.to_api() for port in session.service_ports],
    }, 201


@blueprint.route("/kernel/<token>", methods=["GET"])
@authenticated
async def info(token: str) -> dict[str, Any]:
    session = await _session(token)
    stats = session.last_stat or KernelStats()
    age = datetime.now(UTC) - session.created_at
    return {
        "lang": session.lang,
        "age": int(age.total_seconds() * 1000),
        "memoryLimit": int(session.occupied_slots.get("mem", 0)) // 1024,
        "numQueriesExecuted": session.num_queries,
        "cpuCreditUsed": stats.cpu_used,
        "tag": session.tag,
        "queryTimeout": -1,
        "idleTimeout": -1,
        "maxCpuCredit": -1,
        "idle": -1,
        "memoryUsed": stats.mem_cur_bytes // 1024,
        # Not in spec 4.3's table; the same list as the create call's (spec 4.2).
        "servicePorts": [port.to_api() for port in session.service_ports],
    }


@blueprint.route("/kernel/<token>", methods=["DELETE"])
@authenticated
async def destroy(token: str) -> dict[str, Any]:
    session = await _session(token)
    stats = await manager_context().sessions.destroy(session)
    # 200 with a body, not 204: the 18.12 client reads stats only from a 200 (spec 4.4).
    return {"stats": stats.as_dict() if stats is not None else None}


@blueprint.route("/kernel/<token>", methods=["PATCH"])
@authenticated
async def restart(token: str) -> tuple[str, int]:
    session = await _session(token)
    await manager_context().sessions.restart(session)
    return "", 204


@blueprint.route("/kernel/<token>", methods=["POST"])
@authenticated
async def execute(token: str) -> dict[str, Any]:
    ctx = manager_context()
    limits = ctx.config.limits
    body = await json_body()
    mode = body.get("mode")
    if mode not in EXECUTE_MODES:
        raise errors.InvalidAPIParameters(f"'mode' must be one of {', '.join(EXECUTE_MODES)}.")
    run_id = check_run_id(body.get("runId"))
    if mode == "complete":
        return await _complete(token, body)
    code = check_code(body.get("code"), limits)
    if mode in ("continue", "input") and not run_id:
        raise errors.InvalidAPIParameters(f"'runId' is required with mode '{mode}'.")
    # Only batch runs read options; a query's are ignored, as the client sends none.
    options = batch_options(body.get("options"), limits) if mode == "batch" else {}
    result = await ctx.sessions.execute_live(
        current_keypair().access_key,
        token,
        run_id=run_id or new_run_id(),
        mode=mode,
        code=code,
        options=options,
    )
    return {"result": result.as_api()}


@blueprint.route("/kernel/<token>/complete", methods=["POST"])
@authenticated
async def complete(token: str) -> dict[str, Any]:
    return await _complete(token, await json_body())


async def _complete(token: str, body: dict[str, Any]) -> dict[str, Any]:
    """Code completion (spec 4.8): ``/complete``, or execute's ``complete`` mode."""
    ctx = manager_context()
    code = check_code(body.get("code"), ctx.config.limits)
    options = complete_options(body.get("options"), ctx.config.limits)
    session = await _session(token)
    return {"result": await ctx.sessions.complete(session, code, options)}


@blueprint.route("/kernel/<token>/interrupt", methods=["POST"])
@authenticated
async def interrupt(token: str) -> tuple[str, int]:
    session = await _session(token)
    await manager_context().sessions.interrupt(session)
    return "", 204


@blueprint.route("/kernel/<token>/logs", methods=["GET"])
@authenticated
async def logs(token: str) -> dict[str, Any]:
    session = await _session(token)
    return {"result": {"logs": await manager_context().sessions.logs(session)}}
