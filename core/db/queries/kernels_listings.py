"""SQL for the ``kernels`` table, the admin API's side: listings for many keys at once
(one statement per kind of data, whatever the number of rows). The row type and the
lifecycle's statements are in `crucible.db.queries.kernels`."""

from __future__ import annotations

from collections.abc import Sequence

from crucible.db.pool import Executor
from crucible.db.queries.kernels import COLUMNS, Kernel


async def live_session_counts(ex: Executor, access_keys: Sequence[str]) -> dict[str, int]:
    rows = await ex.fetch(
        """SELECT access_key, count(*) AS n FROM kernels
           WHERE access_key = ANY($1::text[]) AND role = 'master' AND status <> 'TERMINATED'
           GROUP BY access_key""",
        list(access_keys),
    )
    return {row["access_key"]: int(row["n"]) for row in rows}


async def sessions_of(ex: Executor, access_keys: Sequence[str], status: str | None) -> list[Kernel]:
    """The sessions of `access_keys` (in `status`, or any), newest first."""
    return Kernel.from_rows(
        await ex.fetch(
            f"""SELECT {COLUMNS} FROM kernels
                WHERE role = 'master' AND access_key = ANY($1::text[])
                  AND ($2::text IS NULL OR status = $2)
                ORDER BY created_at DESC, id""",
            list(access_keys),
            status,
        )
    )


async def live_sessions_named(
    ex: Executor, tokens: Sequence[str], owner: str | None, viewer: str | None
) -> list[Kernel]:
    """One live session per token (of `owner`, or anyone's): across keys the `viewer`'s
    own wins, then a RUNNING one, then the newest."""
    return Kernel.from_rows(
        await ex.fetch(
            f"""SELECT DISTINCT ON (sess_id) {COLUMNS} FROM kernels
                WHERE role = 'master' AND sess_id = ANY($1::text[]) AND status <> 'TERMINATED'
                  AND ($2::text IS NULL OR access_key = $2)
                ORDER BY sess_id, (access_key = $3) DESC, (status = 'RUNNING') DESC,
                         created_at DESC""",
            list(tokens),
            owner,
            viewer,
        )
    )


async def workers_of(
    ex: Executor, sessions: Sequence[tuple[str, str]], status: str | None
) -> list[Kernel]:
    """The workers of the ``(access key, token)`` `sessions`, oldest first."""
    return Kernel.from_rows(
        await ex.fetch(
            f"""SELECT {COLUMNS} FROM kernels
                WHERE role = 'worker'
                  AND (access_key, sess_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                  AND ($3::text IS NULL OR status = $3)
                ORDER BY created_at, id""",
            [access_key for access_key, _ in sessions],
            [token for _, token in sessions],
            status,
        )
    )


async def workers_named(
    ex: Executor, tokens: Sequence[str], owner: str | None, status: str | None
) -> list[Kernel]:
    """The workers of the sessions named `tokens` (of `owner`, or anyone's)."""
    return Kernel.from_rows(
        await ex.fetch(
            f"""SELECT {COLUMNS} FROM kernels
                WHERE role = 'worker' AND sess_id = ANY($1::text[])
                  AND ($2::text IS NULL OR access_key = $2) AND ($3::text IS NULL OR status = $3)
                ORDER BY created_at, id""",
            list(tokens),
            owner,
            status,
        )
    )


async def on_agents(ex: Executor, agent_ids: Sequence[str], status: str | None) -> list[Kernel]:
    """Every kernel (masters and workers) on `agent_ids`, newest first."""
    return Kernel.from_rows(
        await ex.fetch(
            f"""SELECT {COLUMNS} FROM kernels
                WHERE agent_id = ANY($1::text[]) AND ($2::text IS NULL OR status = $2)
                ORDER BY created_at DESC, id""",
            list(agent_ids),
            status,
        )
    )
