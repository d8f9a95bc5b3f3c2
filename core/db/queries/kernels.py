"""SQL for the ``kernels`` table: one row per container; a session is its master kernel
plus its workers (``role``), addressed by the client's token (``sess_id``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs

from crucible.db.pool import Executor
from crucible.db.queries.columns import Row, from_jsonb, to_jsonb
from crucible.kernels.service_ports import ServicePort, service_ports_from_api
from crucible.protocol.stats import KernelStats

LIVE_STATUSES = (
    "PENDING",
    "PREPARING",
    "BUILDING",
    "RUNNING",
    "RESTARTING",
    "RESIZING",
    "SUSPENDED",
    "TERMINATING",
)

#: Every column `Kernel` reads, for the SELECT lists (`kernels_listings` too).
COLUMNS = (
    "id, sess_id, role, access_key, agent_id, container_id, status, status_info, image, lang, "
    "tag, environ, occupied_slots, num_queries, last_stat, created_at, last_active, "
    "terminated_at, service_ports"
)


@attrs.frozen
class Kernel(Row):
    """One ``kernels`` row; the lifecycle calls a master kernel's row a session."""

    id: str  # the row's UUID; internal, never in URLs
    token: str  # ``sess_id``, the clientSessionToken: `kernelId` in the API
    role: str  # master or worker
    access_key: str
    agent_id: str | None
    container_id: str | None
    status: str
    status_info: str | None
    image: str
    lang: str
    tag: str | None
    environ: dict[str, str]
    occupied_slots: dict[str, float]
    num_queries: int
    last_stat: KernelStats | None
    created_at: datetime
    last_active: datetime
    terminated_at: datetime | None
    #: The apps its image declares (spec 9), as the agent reported them at creation.
    service_ports: tuple[ServicePort, ...]

    @classmethod
    def converted(cls, row: Any) -> dict[str, Any]:
        return {
            "id": str(row["id"]),
            "token": row["sess_id"],
            "environ": from_jsonb(row["environ"]) or {},
            "occupied_slots": from_jsonb(row["occupied_slots"]) or {},
            "last_stat": KernelStats.from_stored(from_jsonb(row["last_stat"])),
            "service_ports": service_ports_from_api(from_jsonb(row["service_ports"]) or []),
        }

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES


@attrs.frozen
class KeypairLoad(Row):
    """What one access key's live kernels hold: sessions, cores, bytes."""

    sessions: int
    cpu: float
    mem: int

    @classmethod
    def converted(cls, row: Any) -> dict[str, Any]:
        return {"cpu": float(row["cpu"]), "mem": int(row["mem"])}


@attrs.frozen
class Placement(Row):
    """A kernel as heartbeat reconciliation sees it: whose, in which state, since when."""

    id: str
    access_key: str
    status: str
    created_at: datetime


# -- one session ----------------------------------------------------------------------------


async def live_session(ex: Executor, access_key: str, token: str) -> Kernel | None:
    row = await ex.fetchrow(
        f"""SELECT {COLUMNS} FROM kernels
            WHERE access_key = $1 AND sess_id = $2 AND role = 'master'
              AND status <> 'TERMINATED'""",
        access_key,
        token,
    )
    return Kernel.from_optional(row)


async def mark_running(
    ex: Executor,
    kernel_id: str,
    container_id: str | None,
    *,
    service_ports: Sequence[ServicePort] = (),
) -> Kernel | None:
    """PREPARING → RUNNING in `container_id`, offering `service_ports`; None when it is no
    longer preparing."""
    row = await ex.fetchrow(
        f"""UPDATE kernels SET status = 'RUNNING', container_id = $2, service_ports = $3::jsonb
            WHERE id = $1::uuid AND status = 'PREPARING' RETURNING {COLUMNS}""",
        kernel_id,
        container_id,
        to_jsonb([port.to_api() for port in service_ports]),
    )
    return Kernel.from_optional(row)


async def mark_restarting(ex: Executor, kernel_id: str) -> None:
    await ex.execute(
        "UPDATE kernels SET status = 'RESTARTING' WHERE id = $1::uuid AND status = 'RUNNING'",
        kernel_id,
    )


async def mark_restarted(ex: Executor, kernel_id: str, container_id: str | None) -> None:
    await ex.execute(
        """UPDATE kernels SET status = 'RUNNING', container_id = $2, last_active = now()
           WHERE id = $1::uuid AND status = 'RESTARTING'""",
        kernel_id,
        container_id,
    )


async def mark_terminating(ex: Executor, kernel_id: str) -> None:
    await ex.execute(
        """UPDATE kernels SET status = 'TERMINATING'
           WHERE id = $1::uuid AND status <> 'TERMINATED'""",
        kernel_id,
    )


async def mark_terminated(
    ex: Executor, kernel_id: str, status_info: str, stats: KernelStats | None
) -> Kernel | None:
    """End the kernel (its last stats kept unless `stats` are newer); None when it had
    ended already."""
    row = await ex.fetchrow(
        f"""UPDATE kernels SET status = 'TERMINATED', status_info = $2, terminated_at = now(),
                               last_stat = coalesce($3::jsonb, last_stat)
            WHERE id = $1::uuid AND status <> 'TERMINATED'
            RETURNING {COLUMNS}""",
        kernel_id,
        status_info,
        to_jsonb(stats.as_dict()) if stats is not None else None,
    )
    return Kernel.from_optional(row)


async def set_mounts(ex: Executor, kernel_id: str, mounts: list[dict[str, Any]]) -> None:
    await ex.execute(
        "UPDATE kernels SET mounts = $2::jsonb WHERE id = $1::uuid", kernel_id, to_jsonb(mounts)
    )


# -- many sessions --------------------------------------------------------------------------


async def count_live_sessions(ex: Executor) -> int:
    return int(
        await ex.fetchval(
            "SELECT count(*) FROM kernels WHERE role = 'master' AND status <> 'TERMINATED'"
        )
    )


async def live_sessions(ex: Executor) -> list[Kernel]:
    return Kernel.from_rows(
        await ex.fetch(
            f"""SELECT {COLUMNS} FROM kernels
                WHERE role = 'master' AND status <> 'TERMINATED'"""
        )
    )


async def idle_sessions(ex: Executor, idle_for: float) -> list[Kernel]:
    """RUNNING sessions without activity for `idle_for` seconds."""
    return Kernel.from_rows(
        await ex.fetch(
            f"""SELECT {COLUMNS} FROM kernels
                WHERE role = 'master' AND status = 'RUNNING'
                  AND last_active < now() - make_interval(secs => $1)""",
            float(idle_for),
        )
    )


async def keypair_load(ex: Executor, access_key: str) -> KeypairLoad:
    return KeypairLoad.from_row(
        await ex.fetchrow(
            """SELECT count(*) FILTER (WHERE role = 'master') AS sessions,
                      coalesce(sum((occupied_slots->>'cpu')::numeric), 0) AS cpu,
                      coalesce(sum((occupied_slots->>'mem')::numeric), 0) AS mem
               FROM kernels WHERE access_key = $1 AND status <> 'TERMINATED'""",
            access_key,
        )
    )


async def record_queries(ex: Executor, counts: Sequence[tuple[str, int]]) -> None:
    """Add ``(kernel id, queries)`` to each kernel's count and mark it active now."""
    await ex.executemany(
        """UPDATE kernels SET num_queries = num_queries + $2, last_active = now()
           WHERE id = $1::uuid""",
        counts,
    )


async def sessions_mounting(ex: Executor, folder_id: str) -> list[str]:
    """Tokens of the live sessions that mount folder `folder_id` (32 hex digits)."""
    rows = await ex.fetch(
        """SELECT sess_id FROM kernels WHERE status <> 'TERMINATED' AND role = 'master'
           AND mounts @> $1::jsonb ORDER BY sess_id""",
        to_jsonb([{"id": folder_id}]),
    )
    return [row["sess_id"] for row in rows]


async def delete_of_keypair(ex: Executor, access_key: str) -> None:
    await ex.execute("DELETE FROM kernels WHERE access_key = $1", access_key)


# -- per agent ------------------------------------------------------------------------------


async def placements_on_agent(
    ex: Executor, agent_id: str, kernel_ids: Iterable[str]
) -> list[Placement]:
    """The live kernels on `agent_id`, and those of `kernel_ids` that ended there."""
    rows = await ex.fetch(
        """SELECT id::text AS id, access_key, status, created_at FROM kernels
           WHERE agent_id = $1 AND (status <> 'TERMINATED' OR id::text = ANY($2::text[]))""",
        agent_id,
        list(kernel_ids),
    )
    return Placement.from_rows(rows)


async def set_stats(ex: Executor, stats: Sequence[tuple[str, KernelStats]]) -> None:
    """Store the latest ``(kernel id, stats)`` of each kernel."""
    await ex.executemany(
        "UPDATE kernels SET last_stat = $2::jsonb WHERE id = $1::uuid",
        [(kernel_id, to_jsonb(values.as_dict())) for kernel_id, values in stats],
    )


async def live_on_agents(ex: Executor, agent_ids: Iterable[str]) -> list[str]:
    rows = await ex.fetch(
        """SELECT id::text AS id FROM kernels
           WHERE agent_id = ANY($1::text[]) AND status <> 'TERMINATED'""",
        list(agent_ids),
    )
    return [row["id"] for row in rows]


async def ended_among(ex: Executor, kernel_ids: Sequence[str]) -> list[tuple[str, str]]:
    """``(id, status_info)`` of those of `kernel_ids` that are terminated (or errored)."""
    rows = await ex.fetch(
        """SELECT id, status_info FROM kernels
            WHERE id = ANY($1::uuid[]) AND status IN ('TERMINATED', 'ERROR')""",
        [uuid.UUID(kernel_id) for kernel_id in kernel_ids],
    )
    return [(str(row["id"]), str(row["status_info"] or "")) for row in rows]
