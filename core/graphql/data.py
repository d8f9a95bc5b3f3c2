"""The data behind the admin schema: one statement per kind of data, for many keys at once.

Each fetcher runs one query function of `crucible.db.queries` (the same ones the services
call) on the request's `Loader`, which counts the statements. Every fetcher returns plain
dicts keyed by GraphQL field names, so graphql-core's default resolver reads them; fields
that need more data carry the keys to load it under underscore-prefixed names, which no
GraphQL field can have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from operator import attrgetter
from typing import Any, TypeVar

import attrs

from crucible.db.queries import (
    agents,
    kernels_listings,
    keypairs,
    resource_policies,
    usage_daily,
    vfolders,
)
from crucible.db.queries.agents import Agent
from crucible.db.queries.kernels import Kernel
from crucible.db.queries.keypairs import Keypair
from crucible.db.queries.resource_policies import ResourcePolicy
from crucible.db.queries.vfolders import VFolder
from crucible.graphql.loader import Fetcher, Loader, group
from crucible.kernels.catalog import split_ref
from crucible.protocol.stats import KernelStats
from crucible.sessions.resources import GPU_SLOTS
from crucible.usage import Period

MiB = 1024 * 1024

R = TypeVar("R")


def _slot(slots: dict[str, Any], *names: str) -> float:
    for name in names:
        value = slots.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0


# -- row → object ---------------------------------------------------------------------------


def keypair_object(keypair: Keypair) -> dict[str, Any]:
    return attrs.asdict(keypair)


def kernel_object(kernel: Kernel) -> dict[str, Any]:
    slots = kernel.occupied_slots
    # Unknown live stats are 0, never null: the CLI divides them unconditionally (7.4).
    stats = (kernel.last_stat or KernelStats()).as_dict()
    return {
        "sess_id": kernel.token,
        "id": kernel.id,
        "role": kernel.role,
        "lang": kernel.lang,
        "tag": kernel.tag,
        "status": kernel.status,
        "status_info": kernel.status_info,
        "created_at": kernel.created_at,
        "terminated_at": kernel.terminated_at,
        "agent": kernel.agent_id,
        "container_id": kernel.container_id,
        "service_ports": [port.to_api() for port in kernel.service_ports],
        "mem_slot": int(_slot(slots, "mem") // MiB),
        "cpu_slot": _slot(slots, "cpu"),
        "gpu_slot": _slot(slots, *GPU_SLOTS),
        "tpu_slot": _slot(slots, "tpu.device", "tpu"),
        "occupied_slots": dict(slots),
        "devices": kernel.device_stats,
        "num_queries": kernel.num_queries,
        **stats,
        "_access_key": kernel.access_key,
    }


def warm_pool_fields(pool: dict[str, Any]) -> dict[str, Any]:
    """An agent's warm pool as its GraphQL fields (zeros for an agent without one)."""
    ready = pool.get("ready") or {}
    return {
        "warm_pool_ready": sum(int(n) for n in ready.values()),
        "warm_pool_starting": int(pool.get("starting", 0)),
        "warm_pool_mem_bytes": float(pool.get("memory_bytes", 0)),
        "warm_pool_claims": int(pool.get("claims", 0)),
        "warm_pool_misses": int(pool.get("misses", 0)),
    }


def agent_object(agent: Agent) -> dict[str, Any]:
    available = agent.available_slots
    return {
        "id": agent.id,
        "status": agent.status,
        "region": agent.region,
        "addr": agent.addr,
        "first_contact": agent.first_contact,
        "lost_at": agent.lost_at,
        "mem_slots": int(_slot(available, "mem") // MiB),
        "cpu_slots": _slot(available, "cpu"),
        "gpu_slots": _slot(available, *GPU_SLOTS),
        "tpu_slots": _slot(available, "tpu.device", "tpu"),
        "available_slots": dict(available),
        "occupied_slots": {**agent.used_slots, "cpu": agent.used_cpu, "mem": agent.used_mem},
        "used_mem_slots": int(agent.used_mem // MiB),
        "used_cpu_slots": agent.used_cpu,
        "used_gpu_slots": _slot(agent.used_slots, *GPU_SLOTS),
        "devices": agent.last_stat.get("devices") or [],
        "used_tpu_slots": 0.0,
        "cpu_cur_pct": _slot(agent.last_stat, "cpu_pct", "cpu_cur_pct"),
        "mem_cur_bytes": agent.mem_cur,
        **warm_pool_fields(agent.warm_pool),
    }


def vfolder_object(folder: VFolder) -> dict[str, Any]:
    return {
        "id": folder.id,
        "host": folder.host,
        "name": folder.name,
        "max_files": folder.max_files,
        "max_size": folder.max_size // 1024,  # the API speaks KiB, the table bytes
        "created_at": folder.created_at,
        "last_used": folder.last_used,
        # Live usage lives with the storage plugin, not in the database.
        "num_files": None,
        "cur_size": None,
    }


def policy_object(policy: ResourcePolicy) -> dict[str, Any]:
    return attrs.asdict(policy)


# -- fetchers: one statement each, through the loader (which counts them) -------------------


def _by_key(
    find: Callable[[Loader, list[Any]], Awaitable[Sequence[R]]],
    key: Callable[[R], Any],
    to_object: Callable[[R], dict[str, Any]],
) -> Fetcher:
    """A fetcher running ``find(loader, keys)`` and keeping each row under its `key`."""

    async def fetch(loader: Loader, params: tuple[Any, ...], keys: list[Any]) -> dict[Any, Any]:
        return {key(row): to_object(row) for row in await find(loader, keys)}

    return fetch


def _listing(
    find: Callable[..., Awaitable[Sequence[R]]], to_object: Callable[[R], dict[str, Any]]
) -> Fetcher:
    """A fetcher of one list, ``find(loader, *params)``, kept under the key None."""

    async def fetch(loader: Loader, params: tuple[Any, ...], keys: list[Any]) -> dict[Any, Any]:
        return {None: [to_object(row) for row in await find(loader, *params)]}

    return fetch


fetch_keypairs_by_key = _by_key(keypairs.by_keys, attrgetter("access_key"), keypair_object)


async def _keypair_listing(
    loader: Loader, user_id: str | None, is_active: bool | None
) -> list[Keypair]:
    return await keypairs.listing(loader, user_id=user_id, is_active=is_active)


# Params: (user id, is active).
fetch_keypair_list = _listing(_keypair_listing, keypair_object)


async def fetch_concurrency_used(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    return await kernels_listings.live_session_counts(loader, keys)


def _kernels_grouped(
    listing: Callable[..., Awaitable[list[Kernel]]], key: Callable[[dict[str, Any]], Any]
) -> Fetcher:
    """A fetcher running ``listing(loader, keys, *params)`` and grouping the kernels by
    `key` (a list per key)."""

    async def fetch(loader: Loader, params: tuple[Any, ...], keys: list[Any]) -> dict[Any, Any]:
        found = await listing(loader, keys, *params)
        return group((kernel_object(kernel) for kernel in found), key)

    return fetch


# Keys: access keys; params: (status,).
fetch_sessions_by_key = _kernels_grouped(kernels_listings.sessions_of, lambda s: s["_access_key"])
# Keys: (access key, token) pairs; params: (status,).
fetch_workers_by_session = _kernels_grouped(
    kernels_listings.workers_of, lambda w: (w["_access_key"], w["sess_id"])
)
# Keys: tokens; params: (owner, status).
fetch_workers_by_token = _kernels_grouped(kernels_listings.workers_named, lambda w: w["sess_id"])
# Keys: agent ids; params: (status,).
fetch_kernels_by_agent = _kernels_grouped(kernels_listings.on_agents, lambda k: k["agent"])


async def fetch_session_by_token(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    owner, viewer = params
    found = await kernels_listings.live_sessions_named(loader, keys, owner, viewer)
    return {kernel.token: kernel_object(kernel) for kernel in found}


fetch_agents_by_id = _by_key(agents.by_ids, attrgetter("id"), agent_object)
# Params: (status,).
fetch_agent_list = _listing(agents.with_status, agent_object)


async def fetch_images(loader: Loader, params: tuple[Any, ...], keys: list[Any]) -> dict[Any, Any]:
    images: dict[str, dict[str, Any]] = {}
    for installed in await agents.alive_images(loader):
        for image in installed:
            ref = str(image.get("ref", ""))
            if not ref or ref in images:
                continue
            name, tag = split_ref(ref)
            labels = image.get("labels") or {}
            digest = image.get("id") or image.get("digest") or labels.get("ai.backend.digest")
            images[ref] = {"name": name, "tag": tag, "hash": digest}
    return {None: [images[ref] for ref in sorted(images)]}


async def fetch_vfolders_by_owner(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    grouped = group(await vfolders.of_owners(loader, keys), lambda f: f.owner_access_key)
    return {key: [vfolder_object(f) for f in folders] for key, folders in grouped.items()}


fetch_policies_by_name = _by_key(resource_policies.by_names, attrgetter("name"), policy_object)
fetch_policy_list = _listing(resource_policies.listing, policy_object)


async def fetch_usage(loader: Loader, params: tuple[Any, ...], keys: list[Any]) -> dict[Any, Any]:
    access_keys, first, last, period = params
    found = await usage_daily.report(
        loader,
        Period(period),
        None if access_keys is None else list(access_keys),
        date.fromisoformat(first),
        date.fromisoformat(last),
    )
    return {None: found}


#: kind → (fetcher, what a miss or an absent key reads as).
FETCHERS: dict[str, tuple[Fetcher, Any]] = {
    "keypair": (fetch_keypairs_by_key, None),
    "keypairs": (fetch_keypair_list, []),
    "concurrency_used": (fetch_concurrency_used, 0),
    "sessions": (fetch_sessions_by_key, []),
    # Spec 7.4 trap: no session is an object of nulls, never null itself.
    "session": (fetch_session_by_token, {}),
    "workers": (fetch_workers_by_session, []),
    "workers_by_token": (fetch_workers_by_token, []),
    "computations": (fetch_kernels_by_agent, []),
    "agent": (fetch_agents_by_id, None),
    "agents": (fetch_agent_list, []),
    "images": (fetch_images, []),
    "vfolders": (fetch_vfolders_by_owner, []),
    "policy": (fetch_policies_by_name, None),
    "policies": (fetch_policy_list, []),
    "usage": (fetch_usage, []),
}
