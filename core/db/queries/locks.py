"""Advisory locks: cluster-wide mutual exclusion held until the transaction ends."""

from __future__ import annotations

from crucible.db.pool import Executor


async def hold(ex: Executor, key: int) -> None:
    """Wait for and hold lock `key` until the caller's transaction ends."""
    await ex.execute("SELECT pg_advisory_xact_lock($1)", key)


async def hold_named(ex: Executor, name: str) -> None:
    """The same for a lock named by text (hashed to its key by PostgreSQL)."""
    await ex.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)
