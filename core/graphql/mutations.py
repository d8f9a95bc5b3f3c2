"""Admin mutations (spec 7.3-7.4): keypairs, and resource policies (a Crucible extension).

Each returns ``{ok, msg, ...}``; a refusal that is the caller's business (unknown
keypair, unknown policy, a value out of range) is ``ok: false`` with a reason, as the
legacy server did, so the CLI prints it instead of a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from crucible import errors
from crucible.db.queries.resource_policies import UPDATABLE
from crucible.graphql.context import GraphQLContext
from crucible.graphql.data import keypair_object
from crucible.graphql.loader import Loader, Mutation
from crucible.keypairs import MAX_USER_ID_LENGTH, NewKeypair
from crucible.resource_policies import ResourcePolicy

log = logging.getLogger(__name__)

#: A policy's caps, by their field names (the columns `update` may set).
_POLICY_FIELDS = UPDATABLE


def _context(loader: Loader) -> GraphQLContext:
    context: GraphQLContext = loader.context
    return context


async def _check_keypair_props(loader: Loader, props: dict[str, Any]) -> str | None:
    for key in ("concurrency_limit", "rate_limit"):
        value = props.get(key)
        if value is not None and value < 0:
            return f"{key} must not be negative."
    policy = props.get("resource_policy")
    if policy is not None:
        loader.statements += 1
        if await _context(loader).policies.get(policy) is None:
            return f"There is no resource policy named {policy!r}."
    return None


async def create_keypair(loader: Loader, arguments: dict[str, Any]) -> dict[str, Any]:
    ctx = _context(loader)
    # The client declares the id as Int! when it looks like a number (spec 7.4 trap).
    user_id = str(arguments["user_id"])
    props: dict[str, Any] = arguments["props"]
    failed = {"ok": False, "keypair": None}
    if not 1 <= len(user_id) <= MAX_USER_ID_LENGTH:
        return {**failed, "msg": f"user_id must be 1-{MAX_USER_ID_LENGTH} characters."}
    if problem := await _check_keypair_props(loader, props):
        return {**failed, "msg": problem}
    loader.statements += 1
    try:
        new = NewKeypair(
            user_id,
            is_active=props.get("is_active", True) is not False,
            is_admin=bool(props.get("is_admin")),
            concurrency_limit=_or(
                props.get("concurrency_limit"), ctx.config.keypairs.concurrency_limit
            ),
            rate_limit=_or(props.get("rate_limit"), ctx.config.ratelimit.default_keypair_limit),
            resource_policy=props.get("resource_policy") or "default",
        )
        keypair = await ctx.keypairs.create(new)
    except errors.UnstorableValue:
        raise  # a NUL or the like in the input: the request is at fault, a 400
    except Exception:
        # The database said no (a race with a policy deletion, a constraint): the caller
        # gets the reason in general terms; the details go to the log.
        log.exception("create_keypair for %r failed", user_id)
        return {**failed, "msg": "The keypair could not be stored."}
    log.info("keypair %s created for %r by %s", keypair.access_key, user_id, ctx.viewer.access_key)
    return {"ok": True, "msg": "", "keypair": keypair_object(keypair)}


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


async def modify_keypair(loader: Loader, arguments: dict[str, Any]) -> dict[str, Any]:
    ctx = _context(loader)
    access_key: str = arguments["access_key"]
    props: dict[str, Any] = arguments["props"]
    # Absent or null means "unchanged" here (the same input type creates keypairs).
    changes = {key: value for key, value in props.items() if value is not None}
    if problem := await _check_keypair_props(loader, changes):
        return {"ok": False, "msg": problem}
    loader.statements += 1
    keypair = await ctx.keypairs.update(access_key, changes)
    if keypair is None:
        return {"ok": False, "msg": f"No keypair {access_key!r}."}
    ctx.keypair_cache.invalidate(access_key)
    log.info("keypair %s modified by %s: %s", access_key, ctx.viewer.access_key, sorted(changes))
    return {"ok": True, "msg": ""}


async def delete_keypair(loader: Loader, arguments: dict[str, Any]) -> dict[str, Any]:
    ctx = _context(loader)
    access_key: str = arguments["access_key"]
    if access_key == ctx.viewer.access_key:
        return {"ok": False, "msg": "A keypair cannot delete itself."}
    loader.statements += 1
    problem = await ctx.keypairs.delete(access_key)
    if problem is not None:
        return {"ok": False, "msg": problem}
    ctx.keypair_cache.invalidate(access_key)
    log.info("keypair %s deleted by %s", access_key, ctx.viewer.access_key)
    return {"ok": True, "msg": ""}


def _check_policy_props(props: dict[str, Any]) -> str | None:
    sessions = props.get("max_concurrent_sessions")
    if sessions is not None and sessions <= 0:
        return "max_concurrent_sessions must be positive."
    for key in _POLICY_FIELDS[1:]:
        value = props.get(key)
        if value is not None and value < 0:
            return f"{key} must not be negative."
    return None


async def create_resource_policy(loader: Loader, arguments: dict[str, Any]) -> dict[str, Any]:
    ctx = _context(loader)
    name: str = arguments["name"]
    props: dict[str, Any] = arguments["props"]
    if not 1 <= len(name) <= 64:
        return {"ok": False, "msg": "The name must be 1-64 characters."}
    if problem := _check_policy_props(props):
        return {"ok": False, "msg": problem}
    policy = ResourcePolicy(
        name=name,
        max_concurrent_sessions=_or(props.get("max_concurrent_sessions"), 5),
        max_cpu_cores=props.get("max_cpu_cores"),
        max_memory_bytes=props.get("max_memory_bytes"),
        max_vfolder_count=props.get("max_vfolder_count"),
        max_vfolder_size_bytes=props.get("max_vfolder_size_bytes"),
        max_gpu_slots=props.get("max_gpu_slots"),
    )
    loader.statements += 1
    if await ctx.policies.create(policy) is None:
        return {"ok": False, "msg": f"A resource policy named {name!r} exists already."}
    log.info("resource policy %r created by %s", name, ctx.viewer.access_key)
    return {"ok": True, "msg": ""}


async def modify_resource_policy(loader: Loader, arguments: dict[str, Any]) -> dict[str, Any]:
    ctx = _context(loader)
    name: str = arguments["name"]
    # Here an explicit null clears an optional cap; an absent key leaves it alone.
    props: dict[str, Any] = dict(arguments["props"])
    if props.get("max_concurrent_sessions", 0) is None:
        del props["max_concurrent_sessions"]
    if problem := _check_policy_props(props):
        return {"ok": False, "msg": problem}
    loader.statements += 1
    if await ctx.policies.update(name, props) is None:
        return {"ok": False, "msg": f"No resource policy named {name!r}."}
    log.info("resource policy %r modified by %s: %s", name, ctx.viewer.access_key, sorted(props))
    return {"ok": True, "msg": ""}


async def delete_resource_policy(loader: Loader, arguments: dict[str, Any]) -> dict[str, Any]:
    ctx = _context(loader)
    name: str = arguments["name"]
    loader.statements += 1
    problem = await ctx.policies.delete(name)
    if problem is not None:
        return {"ok": False, "msg": problem}
    log.info("resource policy %r deleted by %s", name, ctx.viewer.access_key)
    return {"ok": True, "msg": ""}


MUTATIONS: dict[str, Mutation] = {
    "create_keypair": create_keypair,
    "modify_keypair": modify_keypair,
    "delete_keypair": delete_keypair,
    "create_resource_policy": create_resource_policy,
    "modify_resource_policy": modify_resource_policy,
    "delete_resource_policy": delete_resource_policy,
}
