"""SQL for the ``manager_state`` table: cluster-wide manager settings (spec 8)."""

from __future__ import annotations

from crucible.db.pool import Executor


async def get(ex: Executor, key: str) -> str | None:
    value = await ex.fetchval("SELECT value FROM manager_state WHERE key = $1", key)
    return None if value is None else str(value)


async def put(ex: Executor, key: str, value: str) -> None:
    await ex.execute(
        """INSERT INTO manager_state (key, value) VALUES ($1, $2)
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value""",
        key,
        value,
    )
