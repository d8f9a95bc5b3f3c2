"""SQL for the ``keypairs`` table: the tenants (spec 2.5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from crucible.auth import generate_access_key, generate_secret_key
from crucible.db.pool import Executor
from crucible.db.queries.columns import Row
from crucible.db.queries.keyed import KeyedRows
from crucible.db.statements import update_statement

_COLUMNS = (
    "access_key, secret_key, user_id, is_active, is_admin, resource_policy, "
    "concurrency_limit, rate_limit, num_queries, last_used, created_at"
)
#: The columns `update` may set.
UPDATABLE = ("is_active", "is_admin", "resource_policy", "concurrency_limit", "rate_limit")


@attrs.frozen
class Keypair(Row):
    access_key: str
    secret_key: str = attrs.field(repr=False)
    user_id: str
    is_active: bool
    is_admin: bool
    resource_policy: str
    concurrency_limit: int
    rate_limit: int
    num_queries: int
    last_used: datetime | None
    created_at: datetime


@attrs.frozen
class NewKeypair:
    """A keypair to create: what the caller says, the rest as a new tenant gets it
    (random keys unless given)."""

    user_id: str
    is_admin: bool = attrs.field(default=False, kw_only=True)
    is_active: bool = attrs.field(default=True, kw_only=True)
    concurrency_limit: int = attrs.field(default=5, kw_only=True)
    rate_limit: int = attrs.field(default=5000, kw_only=True)
    resource_policy: str = attrs.field(default="default", kw_only=True)
    access_key: str = attrs.field(factory=generate_access_key, kw_only=True)
    secret_key: str = attrs.field(factory=generate_secret_key, kw_only=True, repr=False)


@attrs.frozen
class Dependents(Row):
    """What still refers to a keypair: its live sessions and the folders it owns."""

    found: bool
    live_sessions: int
    folders: int

    @classmethod
    def converted(cls, row: Any) -> dict[str, Any]:
        return {"live_sessions": row["live"]}


_BY_KEY = KeyedRows(Keypair, "keypairs", "access_key", _COLUMNS)


async def get(ex: Executor, access_key: str) -> Keypair | None:
    return await _BY_KEY.one(ex, access_key)


async def by_keys(ex: Executor, access_keys: Sequence[str]) -> list[Keypair]:
    return await _BY_KEY.many(ex, access_keys)


async def listing(
    ex: Executor, *, user_id: str | None = None, is_active: bool | None = None
) -> list[Keypair]:
    """The keypairs of `user_id` (or everyone's), active or not as asked, oldest first."""
    rows = await ex.fetch(
        f"""SELECT {_COLUMNS} FROM keypairs
            WHERE ($1::text IS NULL OR user_id = $1) AND ($2::bool IS NULL OR is_active = $2)
            ORDER BY created_at, access_key""",
        user_id,
        is_active,
    )
    return Keypair.from_rows(rows)


async def oldest_active_admin(ex: Executor) -> Keypair | None:
    return Keypair.from_optional(
        await ex.fetchrow(
            f"SELECT {_COLUMNS} FROM keypairs WHERE is_admin AND is_active "
            "ORDER BY created_at, access_key LIMIT 1"
        )
    )


async def user_id_of(ex: Executor, access_key: str) -> str | None:
    value = await ex.fetchval("SELECT user_id FROM keypairs WHERE access_key = $1", access_key)
    return str(value) if value is not None else None


async def count_of_user(ex: Executor, user_id: str) -> int:
    return int(await ex.fetchval("SELECT count(*) FROM keypairs WHERE user_id = $1", user_id))


async def count_under_policy(ex: Executor, policy: str) -> int:
    return int(
        await ex.fetchval("SELECT count(*) FROM keypairs WHERE resource_policy = $1", policy)
    )


#: The columns `insert` writes: NewKeypair's fields, by name.
_NEW_COLUMNS = tuple(field.name for field in attrs.fields(NewKeypair))
_INSERT = (
    f"INSERT INTO keypairs ({', '.join(_NEW_COLUMNS)})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(_NEW_COLUMNS) + 1))})"
    f" RETURNING {_COLUMNS}"
)


async def insert(ex: Executor, new: NewKeypair) -> Keypair:
    row = await ex.fetchrow(_INSERT, *(getattr(new, name) for name in _NEW_COLUMNS))
    return Keypair.from_row(row)


async def update(ex: Executor, access_key: str, changes: Mapping[str, Any]) -> Keypair | None:
    """Set the `UPDATABLE` columns among `changes`; None when there is no such keypair."""
    statement = update_statement("keypairs", "access_key", changes, UPDATABLE, _COLUMNS)
    if statement is None:
        return await get(ex, access_key)
    sql, args = statement
    return Keypair.from_optional(await ex.fetchrow(sql, access_key, *args))


async def set_active(ex: Executor, access_key: str, active: bool) -> Keypair | None:
    return Keypair.from_optional(
        await ex.fetchrow(
            f"UPDATE keypairs SET is_active = $2 WHERE access_key = $1 RETURNING {_COLUMNS}",
            access_key,
            active,
        )
    )


async def record_usage(ex: Executor, counts: Mapping[str, tuple[int, datetime]]) -> None:
    """Add ``{access key: (requests, last request)}`` to the keys' counters."""
    await ex.executemany(
        """UPDATE keypairs SET num_queries = num_queries + $2,
                               last_used = GREATEST(last_used, $3)
           WHERE access_key = $1""",
        [(key, n, when) for key, (n, when) in counts.items()],
    )


async def dependents(ex: Executor, access_key: str) -> Dependents:
    return Dependents.from_row(
        await ex.fetchrow(
            """SELECT (SELECT count(*) FROM kernels WHERE access_key = $1
                         AND status <> 'TERMINATED') AS live,
                      (SELECT count(*) FROM vfolders WHERE owner_access_key = $1) AS folders,
                      EXISTS (SELECT 1 FROM keypairs WHERE access_key = $1) AS found""",
            access_key,
        )
    )


async def delete(ex: Executor, access_key: str) -> None:
    await ex.execute("DELETE FROM keypairs WHERE access_key = $1", access_key)


async def lock_table(ex: Executor) -> None:
    """Hold off every other writer of keypairs until the caller's transaction ends."""
    await ex.execute("LOCK TABLE keypairs IN SHARE ROW EXCLUSIVE MODE")
