"""SQL for the ``agents`` table: one row per agent that ever sent a heartbeat."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from crucible.db.pool import Executor
from crucible.db.queries.columns import Row, from_jsonb, to_jsonb


@attrs.frozen
class Agent(Row):
    """An agent's row, with what its live kernels occupy (summed over ``kernels``)."""

    id: str
    status: str
    region: str
    addr: str
    first_contact: datetime
    lost_at: datetime | None
    available_slots: dict[str, float]
    #: The images it has installed: ``{"ref", "id", "labels"}`` objects.
    images: list[dict[str, Any]]
    last_stat: dict[str, Any]
    #: Its warm pool at the last heartbeat (`crucible.protocol.reports.PoolReport` as
    #: JSON); empty when it keeps none.
    warm_pool: dict[str, Any]
    used_cpu: float
    used_mem: float
    #: The memory its kernels used at their last report, bytes.
    mem_cur: float
    #: What its live kernels hold of every slot (``cpu``, ``mem``, ``cuda.device``...).
    used_slots: dict[str, float] = attrs.Factory(dict)

    @classmethod
    def converted(cls, row: Any) -> dict[str, Any]:
        return {
            "available_slots": from_jsonb(row["available_slots"]) or {},
            "images": from_jsonb(row["images"]) or [],
            "last_stat": from_jsonb(row["last_stat"]) or {},
            "warm_pool": from_jsonb(row["warm_pool"]) or {},
            "used_cpu": float(row["used_cpu"]),
            "used_mem": float(row["used_mem"]),
            "mem_cur": float(row["mem_cur"]),
            "used_slots": {
                str(k): float(v) for k, v in (from_jsonb(row["used_slots"]) or {}).items()
            },
        }


_WITH_LOAD = """
    SELECT a.id, a.status, a.region, a.addr, a.first_contact, a.lost_at, a.available_slots,
           a.images, a.last_stat, a.warm_pool, coalesce(u.cpu, 0) AS used_cpu,
           coalesce(u.mem, 0) AS used_mem, coalesce(u.mem_cur, 0) AS mem_cur,
           coalesce(s.used, '{}') AS used_slots
    FROM agents a LEFT JOIN (
        SELECT agent_id,
               sum((occupied_slots->>'cpu')::numeric) AS cpu,
               sum((occupied_slots->>'mem')::numeric) AS mem,
               sum(coalesce((last_stat->>'mem_cur_bytes')::numeric, 0)) AS mem_cur
        FROM kernels WHERE status <> 'TERMINATED' AND agent_id IS NOT NULL
        GROUP BY agent_id
    ) u ON u.agent_id = a.id
    LEFT JOIN (
        SELECT agent_id, jsonb_object_agg(slot, total) AS used
        FROM (
            SELECT k.agent_id, e.key AS slot, sum(e.value::numeric) AS total
            FROM kernels k, jsonb_each_text(k.occupied_slots) e
            WHERE k.status <> 'TERMINATED' AND k.agent_id IS NOT NULL
            GROUP BY 1, 2
        ) per_slot
        GROUP BY agent_id
    ) s ON s.agent_id = a.id
"""


async def record_heartbeat(
    ex: Executor,
    agent_id: str,
    *,
    addr: str,
    version: str,
    capacity: Mapping[str, float],
    images: Sequence[Any],
    devices: Sequence[Any] = (),
    warm_pool: Mapping[str, Any] | None = None,
) -> None:
    """The agent is alive at `addr` now, with this capacity, these images, these
    accelerator devices (kept in ``last_stat``, ``{"devices": [...]}``) and this warm
    pool."""
    await ex.execute(
        """INSERT INTO agents (id, status, addr, version, available_slots, images,
                               last_stat, warm_pool, last_heartbeat, lost_at)
           VALUES ($1, 'ALIVE', $2, $3, $4::jsonb, $5::jsonb, $6::jsonb, $7::jsonb, now(), NULL)
           ON CONFLICT (id) DO UPDATE SET
               status = 'ALIVE', addr = EXCLUDED.addr, version = EXCLUDED.version,
               available_slots = EXCLUDED.available_slots, images = EXCLUDED.images,
               last_stat = coalesce(agents.last_stat, '{}') || EXCLUDED.last_stat,
               warm_pool = EXCLUDED.warm_pool, last_heartbeat = now(), lost_at = NULL""",
        agent_id,
        addr,
        version,
        to_jsonb(dict(capacity)),
        to_jsonb(images),
        to_jsonb({"devices": list(devices)}),
        to_jsonb(dict(warm_pool or {})),
    )


async def mark_lost(ex: Executor, silent_for: float) -> list[str]:
    """Mark LOST the live agents without a heartbeat for `silent_for` seconds; their ids."""
    rows = await ex.fetch(
        """UPDATE agents SET status = 'LOST', lost_at = now()
           WHERE status = 'ALIVE' AND last_heartbeat < now() - make_interval(secs => $1)
           RETURNING id""",
        silent_for,
    )
    return [row["id"] for row in rows]


async def alive_images(ex: Executor) -> list[list[dict[str, Any]]]:
    """The images of every live agent, agent by agent (ordered by id)."""
    rows = await ex.fetch("SELECT images FROM agents WHERE status = 'ALIVE' ORDER BY id")
    return [from_jsonb(row["images"]) or [] for row in rows]


async def most_free(ex: Executor) -> dict[str, float]:
    """Every resource slot some alive agent offers, and the most one of them has free."""
    best: dict[str, float] = {}
    for agent in await with_status(ex, "ALIVE"):
        for slot, total in agent.available_slots.items():
            free = float(total) - agent.used_slots.get(slot, 0.0)
            best[slot] = max(best.get(slot, free), free)
    return best


async def with_status(ex: Executor, status: str | None) -> list[Agent]:
    """The agents in `status` (or all), ordered by id."""
    rows = await ex.fetch(
        _WITH_LOAD + " WHERE ($1::text IS NULL OR a.status = $1) ORDER BY a.id", status
    )
    return Agent.from_rows(rows)


async def by_ids(ex: Executor, agent_ids: Sequence[str]) -> list[Agent]:
    rows = await ex.fetch(_WITH_LOAD + " WHERE a.id = ANY($1::text[])", list(agent_ids))
    return Agent.from_rows(rows)
