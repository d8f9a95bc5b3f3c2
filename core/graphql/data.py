"""The SQL behind the admin schema: one statement per kind of data, for many keys at once.

Every fetcher returns plain dicts keyed by GraphQL field names, so graphql-core's default
resolver reads them; fields that need more data carry the keys to load it under
underscore-prefixed names, which no GraphQL field can have.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from crucible.graphql.loader import Fetcher, Loader, group
from crucible.kernels.catalog import split_ref
from crucible.sessions.model import normalize_stats
from crucible.usage import Period, record_from_row, usage_sql

MiB = 1024 * 1024

KEYPAIR_COLUMNS = (
    "access_key, secret_key, user_id, is_active, is_admin, resource_policy, "
    "concurrency_limit, rate_limit, num_queries, last_used, created_at"
)
KERNEL_COLUMNS = (
    "id, sess_id, role, access_key, agent_id, container_id, status, status_info, lang, tag, "
    "occupied_slots, num_queries, last_stat, created_at, terminated_at"
)
VFOLDER_COLUMNS = "id, host, name, owner_access_key, max_files, max_size, created_at, last_used"
POLICY_COLUMNS = (
    "name, max_concurrent_sessions, max_cpu_cores, max_memory_bytes, max_vfolder_count, "
    "max_vfolder_size_bytes, created_at"
)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _slot(slots: dict[str, Any], *names: str) -> float:
    for name in names:
        value = slots.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 0.0


# -- row → object ---------------------------------------------------------------------------


def keypair_object(row: Any) -> dict[str, Any]:
    return {name.strip(): row[name.strip()] for name in KEYPAIR_COLUMNS.split(",")}


def kernel_object(row: Any) -> dict[str, Any]:
    slots = _json(row["occupied_slots"]) or {}
    # Unknown live stats are 0, never null: the CLI divides them unconditionally (7.4).
    stats = normalize_stats(_json(row["last_stat"])) or normalize_stats({}) or {}
    return {
        "sess_id": row["sess_id"],
        "id": row["id"],
        "role": row["role"],
        "lang": row["lang"],
        "tag": row["tag"],
        "status": row["status"],
        "status_info": row["status_info"],
        "created_at": row["created_at"],
        "terminated_at": row["terminated_at"],
        "agent": row["agent_id"],
        "container_id": row["container_id"],
        "service_ports": [],
        "mem_slot": int(_slot(slots, "mem") // MiB),
        "cpu_slot": _slot(slots, "cpu"),
        "gpu_slot": _slot(slots, "cuda.device", "cuda.shares", "gpu"),
        "tpu_slot": _slot(slots, "tpu.device", "tpu"),
        "num_queries": row["num_queries"],
        **stats,
        "_access_key": row["access_key"],
    }


def agent_object(row: Any) -> dict[str, Any]:
    available = _json(row["available_slots"]) or {}
    last_stat = _json(row["last_stat"]) or {}
    return {
        "id": row["id"],
        "status": row["status"],
        "region": row["region"],
        "addr": row["addr"],
        "first_contact": row["first_contact"],
        "lost_at": row["lost_at"],
        "mem_slots": int(_slot(available, "mem") // MiB),
        "cpu_slots": _slot(available, "cpu"),
        "gpu_slots": _slot(available, "cuda.device", "cuda.shares", "gpu"),
        "tpu_slots": _slot(available, "tpu.device", "tpu"),
        "used_mem_slots": int(float(row["used_mem"]) // MiB),
        "used_cpu_slots": float(row["used_cpu"]),
        "used_gpu_slots": 0.0,
        "used_tpu_slots": 0.0,
        "cpu_cur_pct": _slot(last_stat, "cpu_pct", "cpu_cur_pct"),
        "mem_cur_bytes": float(row["mem_cur"]),
    }


def vfolder_object(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "host": row["host"],
        "name": row["name"],
        "max_files": row["max_files"],
        "max_size": row["max_size"] // 1024,  # the API speaks KiB, the table bytes
        "created_at": row["created_at"],
        "last_used": row["last_used"],
        # Live usage lives with the storage plugin, not in the database.
        "num_files": None,
        "cur_size": None,
    }


def policy_object(row: Any) -> dict[str, Any]:
    cpu = row["max_cpu_cores"]
    return {
        "name": row["name"],
        "max_concurrent_sessions": row["max_concurrent_sessions"],
        "max_cpu_cores": None if cpu is None else float(cpu),
        "max_memory_bytes": row["max_memory_bytes"],
        "max_vfolder_count": row["max_vfolder_count"],
        "max_vfolder_size_bytes": row["max_vfolder_size_bytes"],
        "created_at": row["created_at"],
    }


# -- fetchers -------------------------------------------------------------------------------


async def fetch_keypairs_by_key(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    rows = await loader.fetch(
        f"SELECT {KEYPAIR_COLUMNS} FROM keypairs WHERE access_key = ANY($1::text[])", keys
    )
    return {row["access_key"]: keypair_object(row) for row in rows}


async def fetch_keypair_list(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    user_id, is_active = params
    rows = await loader.fetch(
        f"""SELECT {KEYPAIR_COLUMNS} FROM keypairs
            WHERE ($1::text IS NULL OR user_id = $1) AND ($2::bool IS NULL OR is_active = $2)
            ORDER BY created_at, access_key""",
        user_id,
        is_active,
    )
    return {None: [keypair_object(row) for row in rows]}


async def fetch_concurrency_used(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    rows = await loader.fetch(
        """SELECT access_key, count(*) AS n FROM kernels
           WHERE access_key = ANY($1::text[]) AND role = 'master' AND status <> 'TERMINATED'
           GROUP BY access_key""",
        keys,
    )
    return {row["access_key"]: int(row["n"]) for row in rows}


async def fetch_sessions_by_key(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    (status,) = params
    rows = await loader.fetch(
        f"""SELECT {KERNEL_COLUMNS} FROM kernels
            WHERE role = 'master' AND access_key = ANY($1::text[])
              AND ($2::text IS NULL OR status = $2)
            ORDER BY created_at DESC, id""",
        keys,
        status,
    )
    return group((kernel_object(row) for row in rows), lambda s: s["_access_key"])


async def fetch_session_by_token(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    owner, viewer = params
    # One live session per token and key; across keys (admins) the viewer's own wins,
    # then a RUNNING one, then the newest.
    rows = await loader.fetch(
        f"""SELECT DISTINCT ON (sess_id) {KERNEL_COLUMNS} FROM kernels
            WHERE role = 'master' AND sess_id = ANY($1::text[]) AND status <> 'TERMINATED'
              AND ($2::text IS NULL OR access_key = $2)
            ORDER BY sess_id, (access_key = $3) DESC, (status = 'RUNNING') DESC,
                     created_at DESC""",
        keys,
        owner,
        viewer,
    )
    return {row["sess_id"]: kernel_object(row) for row in rows}


async def fetch_workers_by_session(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    (status,) = params
    rows = await loader.fetch(
        f"""SELECT {KERNEL_COLUMNS} FROM kernels
            WHERE role = 'worker'
              AND (access_key, sess_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
              AND ($3::text IS NULL OR status = $3)
            ORDER BY created_at, id""",
        [access_key for access_key, _ in keys],
        [token for _, token in keys],
        status,
    )
    return group((kernel_object(row) for row in rows), lambda w: (w["_access_key"], w["sess_id"]))


async def fetch_workers_by_token(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    owner, status = params
    rows = await loader.fetch(
        f"""SELECT {KERNEL_COLUMNS} FROM kernels
            WHERE role = 'worker' AND sess_id = ANY($1::text[])
              AND ($2::text IS NULL OR access_key = $2) AND ($3::text IS NULL OR status = $3)
            ORDER BY created_at, id""",
        keys,
        owner,
        status,
    )
    return group((kernel_object(row) for row in rows), lambda w: w["sess_id"])


async def fetch_kernels_by_agent(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    (status,) = params
    rows = await loader.fetch(
        f"""SELECT {KERNEL_COLUMNS} FROM kernels
            WHERE agent_id = ANY($1::text[]) AND ($2::text IS NULL OR status = $2)
            ORDER BY created_at DESC, id""",
        keys,
        status,
    )
    return group((kernel_object(row) for row in rows), lambda k: k["agent"])


_AGENT_SQL = """
    SELECT a.id, a.status, a.region, a.addr, a.first_contact, a.lost_at, a.available_slots,
           a.last_stat, coalesce(u.cpu, 0) AS used_cpu, coalesce(u.mem, 0) AS used_mem,
           coalesce(u.mem_cur, 0) AS mem_cur
    FROM agents a LEFT JOIN (
        SELECT agent_id,
               sum((occupied_slots->>'cpu')::numeric) AS cpu,
               sum((occupied_slots->>'mem')::numeric) AS mem,
               sum(coalesce((last_stat->>'mem_cur_bytes')::numeric, 0)) AS mem_cur
        FROM kernels WHERE status <> 'TERMINATED' AND agent_id IS NOT NULL
        GROUP BY agent_id
    ) u ON u.agent_id = a.id
"""


async def fetch_agents_by_id(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    rows = await loader.fetch(_AGENT_SQL + " WHERE a.id = ANY($1::text[])", keys)
    return {row["id"]: agent_object(row) for row in rows}


async def fetch_agent_list(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    (status,) = params
    rows = await loader.fetch(
        _AGENT_SQL + " WHERE ($1::text IS NULL OR a.status = $1) ORDER BY a.id", status
    )
    return {None: [agent_object(row) for row in rows]}


async def fetch_images(loader: Loader, params: tuple[Any, ...], keys: list[Any]) -> dict[Any, Any]:
    rows = await loader.fetch("SELECT images FROM agents WHERE status = 'ALIVE' ORDER BY id")
    images: dict[str, dict[str, Any]] = {}
    for row in rows:
        for image in _json(row["images"]) or []:
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
    rows = await loader.fetch(
        f"""SELECT {VFOLDER_COLUMNS} FROM vfolders WHERE owner_access_key = ANY($1::text[])
            ORDER BY created_at, name""",
        keys,
    )
    grouped = group(rows, lambda row: row["owner_access_key"])
    return {key: [vfolder_object(row) for row in rows] for key, rows in grouped.items()}


async def fetch_policies_by_name(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    rows = await loader.fetch(
        f"SELECT {POLICY_COLUMNS} FROM resource_policies WHERE name = ANY($1::text[])", keys
    )
    return {row["name"]: policy_object(row) for row in rows}


async def fetch_policy_list(
    loader: Loader, params: tuple[Any, ...], keys: list[Any]
) -> dict[Any, Any]:
    rows = await loader.fetch(f"SELECT {POLICY_COLUMNS} FROM resource_policies ORDER BY name")
    return {None: [policy_object(row) for row in rows]}


async def fetch_usage(loader: Loader, params: tuple[Any, ...], keys: list[Any]) -> dict[Any, Any]:
    access_keys, first, last, period = params
    rows = await loader.fetch(
        usage_sql(Period(period)),
        None if access_keys is None else list(access_keys),
        date.fromisoformat(first),
        date.fromisoformat(last),
    )
    return {None: [record_from_row(row) for row in rows]}


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
