"""SQL for the pending queue: sessions waiting in ``kernels`` as PENDING rows (no agent
yet), what the placed kernels occupy slot by slot, and the "queue changed" notification
managers send one another."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from crucible.db.pool import Executor
from crucible.db.queries import notifications
from crucible.db.queries.columns import Row, from_jsonb, to_jsonb
from crucible.db.queries.kernels import COLUMNS, Kernel

#: The LISTEN/NOTIFY channel on which a manager says "the queue may move now" (a
#: session ended, one was placed): every manager re-runs placement and its waiters look.
QUEUE_CHANNEL = "crucible_session_queue"


@attrs.frozen
class Waiting(Row):
    """A PENDING row as the scheduler sees it."""

    id: str
    access_key: str
    image: str
    occupied_slots: dict[str, float]
    created_at: datetime

    @classmethod
    def converted(cls, row: Any) -> dict[str, Any]:
        return {"id": str(row["id"]), "occupied_slots": from_jsonb(row["occupied_slots"]) or {}}


async def insert_pending(
    ex: Executor,
    *,
    token: str,
    access_key: str,
    image: str,
    lang: str,
    tag: str | None,
    environ: Mapping[str, str],
    slots: Mapping[str, float],
) -> Kernel:
    """A new master kernel, PENDING (on no agent yet), asking for `slots`."""
    row = await ex.fetchrow(
        f"""INSERT INTO kernels (id, sess_id, access_key, agent_id, status, image, lang,
                                 tag, environ, occupied_slots)
            VALUES ($1, $2, $3, NULL, 'PENDING', $4, $5, $6, $7::jsonb, $8::jsonb)
            RETURNING {COLUMNS}""",
        uuid.uuid4(),
        token,
        access_key,
        image,
        lang,
        tag,
        to_jsonb(dict(environ)),
        to_jsonb(dict(slots)),
    )
    return Kernel.from_row(row)


async def waiting(ex: Executor) -> list[Waiting]:
    """Every PENDING session, oldest first."""
    rows = await ex.fetch(
        """SELECT id, access_key, image, occupied_slots, created_at FROM kernels
           WHERE status = 'PENDING' ORDER BY created_at, id"""
    )
    return Waiting.from_rows(rows)


async def any_waiting(ex: Executor) -> bool:
    return bool(await ex.fetchval("SELECT EXISTS (SELECT 1 FROM kernels WHERE status = 'PENDING')"))


async def assign(ex: Executor, placements: Sequence[tuple[str, str]]) -> list[str]:
    """PENDING → PREPARING on the agent of each ``(kernel id, agent id)``; the ids moved
    (a row ended meanwhile stays as it is)."""
    if not placements:
        return []
    rows = await ex.fetch(
        """UPDATE kernels k SET status = 'PREPARING', agent_id = p.agent_id
           FROM unnest($1::uuid[], $2::text[]) AS p(id, agent_id)
           WHERE k.id = p.id AND k.status = 'PENDING'
           RETURNING k.id::text AS id""",
        [uuid.UUID(kernel_id) for kernel_id, _ in placements],
        [agent_id for _, agent_id in placements],
    )
    return [row["id"] for row in rows]


async def end_pending(ex: Executor, kernel_id: str, status_info: str) -> bool:
    """End kernel `kernel_id` if it is still PENDING; whether it was."""
    ended = await ex.fetchval(
        """UPDATE kernels SET status = 'TERMINATED', status_info = $2, terminated_at = now()
           WHERE id = $1::uuid AND status = 'PENDING' RETURNING true""",
        kernel_id,
        status_info,
    )
    return bool(ended)


async def expire_stale(ex: Executor, older_than: float, status_info: str) -> list[str]:
    """End the PENDING rows older than `older_than` seconds (their waiter is gone: its
    manager stopped without ending them); their ids."""
    rows = await ex.fetch(
        """UPDATE kernels SET status = 'TERMINATED', status_info = $2, terminated_at = now()
           WHERE status = 'PENDING' AND created_at < now() - make_interval(secs => $1)
           RETURNING id::text AS id""",
        float(older_than),
        status_info,
    )
    return [row["id"] for row in rows]


async def by_id(ex: Executor, kernel_id: str) -> Kernel | None:
    row = await ex.fetchrow(f"SELECT {COLUMNS} FROM kernels WHERE id = $1::uuid", kernel_id)
    return Kernel.from_optional(row)


async def statuses(ex: Executor, kernel_ids: Iterable[str]) -> dict[str, str]:
    """The status of each of `kernel_ids` (an id with no row is left out)."""
    rows = await ex.fetch(
        "SELECT id::text AS id, status FROM kernels WHERE id = ANY($1::uuid[])",
        [uuid.UUID(kernel_id) for kernel_id in kernel_ids],
    )
    return {row["id"]: row["status"] for row in rows}


#: The sum of one slot's amounts (only numbers count: a slot is a name and an amount,
#: anything else a plugin may record beside them is not room taken).
_AMOUNT = "sum((s.value #>> '{}')::numeric)"


async def occupied_by_agent(ex: Executor) -> dict[str, dict[str, float]]:
    """What the placed live kernels hold on each agent, slot by slot (every slot name)."""
    rows = await ex.fetch(
        f"""SELECT k.agent_id AS owner, s.key AS slot, {_AMOUNT} AS amount
            FROM kernels k, jsonb_each(k.occupied_slots) s
            WHERE k.status NOT IN ('TERMINATED', 'PENDING') AND k.agent_id IS NOT NULL
              AND jsonb_typeof(s.value) = 'number'
            GROUP BY k.agent_id, s.key"""
    )
    return _by_owner(rows)


async def occupied_by_key(ex: Executor) -> dict[str, dict[str, float]]:
    """What the placed live kernels of each access key hold, slot by slot."""
    rows = await ex.fetch(
        f"""SELECT k.access_key AS owner, s.key AS slot, {_AMOUNT} AS amount
            FROM kernels k, jsonb_each(k.occupied_slots) s
            WHERE k.status NOT IN ('TERMINATED', 'PENDING')
              AND jsonb_typeof(s.value) = 'number'
            GROUP BY k.access_key, s.key"""
    )
    return _by_owner(rows)


def _by_owner(rows: Iterable[Any]) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for row in rows:
        found.setdefault(row["owner"], {})[row["slot"]] = float(row["amount"])
    return found


async def notify_queue_changed(ex: Executor) -> None:
    """Tell every manager (this one too) that the queue may move."""
    await notifications.notify(ex, QUEUE_CHANNEL, "")
