"""Keypairs: the tenants of Crucible (spec 2.5), their storage and a lookup cache."""

from __future__ import annotations

import collections
import logging
import time
from datetime import UTC, datetime
from typing import Any

import attrs
import trio

from crucible.auth import generate_access_key, generate_secret_key
from crucible.db.pool import Database
from crucible.db.statements import update_statement

log = logging.getLogger(__name__)

#: Longest user id, in characters (the ``keypairs.user_id`` column's CHECK).
MAX_USER_ID_LENGTH = 256

_COLUMNS = (
    "access_key, secret_key, user_id, is_active, is_admin, resource_policy, "
    "concurrency_limit, rate_limit, num_queries, last_used, created_at"
)


@attrs.frozen
class Keypair:
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

    @classmethod
    def from_row(cls, row: Any) -> Keypair:
        return cls(**{field.name: row[field.name] for field in attrs.fields(cls)})


class KeypairNotFound(LookupError):
    pass


class KeypairRepository:
    """SQL for keypairs."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, access_key: str) -> Keypair | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM keypairs WHERE access_key = $1", access_key
        )
        return Keypair.from_row(row) if row else None

    async def list(self, *, user_id: str | None = None) -> list[Keypair]:
        rows = await self.db.fetch(
            f"SELECT {_COLUMNS} FROM keypairs WHERE $1::text IS NULL OR user_id = $1 "
            "ORDER BY created_at, access_key",
            user_id,
        )
        return [Keypair.from_row(row) for row in rows]

    async def create(
        self,
        user_id: str,
        *,
        is_admin: bool = False,
        is_active: bool = True,
        concurrency_limit: int = 5,
        rate_limit: int = 5000,
        resource_policy: str = "default",
        access_key: str | None = None,
        secret_key: str | None = None,
    ) -> Keypair:
        row = await self.db.fetchrow(
            f"""INSERT INTO keypairs (access_key, secret_key, user_id, is_admin, is_active,
                                      concurrency_limit, rate_limit, resource_policy)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_COLUMNS}""",
            access_key or generate_access_key(),
            secret_key or generate_secret_key(),
            user_id,
            is_admin,
            is_active,
            concurrency_limit,
            rate_limit,
            resource_policy,
        )
        return Keypair.from_row(row)

    async def update(self, access_key: str, changes: dict[str, Any]) -> Keypair | None:
        """Set the given columns (is_active, is_admin, resource_policy, concurrency_limit,
        rate_limit); None when there is no such keypair."""
        allowed = ("is_active", "is_admin", "resource_policy", "concurrency_limit", "rate_limit")
        statement = update_statement("keypairs", "access_key", changes, allowed, _COLUMNS)
        if statement is None:
            return await self.get(access_key)
        sql, args = statement
        row = await self.db.fetchrow(sql, access_key, *args)
        return Keypair.from_row(row) if row else None

    async def delete(self, access_key: str) -> str | None:
        """Delete a keypair and its history; returns why it cannot be, or None when done.

        A keypair with live sessions or owned folders stays: deleting it would strand
        containers or data. Its ended sessions, usage records and folder shares go with it.
        """
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(
                """SELECT (SELECT count(*) FROM kernels WHERE access_key = $1
                             AND status <> 'TERMINATED') AS live,
                          (SELECT count(*) FROM vfolders WHERE owner_access_key = $1) AS folders,
                          EXISTS (SELECT 1 FROM keypairs WHERE access_key = $1) AS found""",
                access_key,
            )
            if not row["found"]:
                return f"No keypair {access_key!r}."
            if row["live"]:
                return f"The keypair still has {row['live']} live session(s)."
            if row["folders"]:
                return f"The keypair still owns {row['folders']} virtual folder(s)."
            for table, column in (
                ("vfolder_permissions", "access_key"),
                ("kernels", "access_key"),
                ("usage_daily", "access_key"),
                ("keypairs", "access_key"),
            ):
                await conn.execute(f"DELETE FROM {table} WHERE {column} = $1", access_key)
        return None

    async def set_active(self, access_key: str, active: bool) -> Keypair:
        row = await self.db.fetchrow(
            f"UPDATE keypairs SET is_active = $2 WHERE access_key = $1 RETURNING {_COLUMNS}",
            access_key,
            active,
        )
        if row is None:
            raise KeypairNotFound(access_key)
        return Keypair.from_row(row)

    async def ensure_bootstrap_admin(
        self,
        user_id: str,
        access_key: str = "",
        secret_key: str = "",
        *,
        concurrency_limit: int = 5,
        rate_limit: int = 5000,
    ) -> tuple[Keypair, bool]:
        """Return the bootstrap admin keypair, creating it on first start.

        With explicit keys (the ``[bootstrap]`` table) that keypair is created if missing;
        otherwise the oldest active admin keypair is reused, or a random one is made.
        Returns ``(keypair, created)``.
        """
        async with self.db.transaction() as conn:
            # Serialise concurrent first starts so only one admin is invented.
            await conn.execute("LOCK TABLE keypairs IN SHARE ROW EXCLUSIVE MODE")
            if access_key:
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM keypairs WHERE access_key = $1", access_key
                )
            else:
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM keypairs WHERE is_admin AND is_active "
                    "ORDER BY created_at, access_key LIMIT 1"
                )
            if row is not None:
                return Keypair.from_row(row), False
            row = await conn.fetchrow(
                f"""INSERT INTO keypairs (access_key, secret_key, user_id, is_admin,
                                          concurrency_limit, rate_limit)
                    VALUES ($1, $2, $3, true, $4, $5) RETURNING {_COLUMNS}""",
                access_key or generate_access_key(),
                secret_key or generate_secret_key(),
                user_id,
                concurrency_limit,
                rate_limit,
            )
            return Keypair.from_row(row), True

    async def record_usage(self, counts: dict[str, tuple[int, datetime]]) -> None:
        await self.db.executemany(
            """UPDATE keypairs SET num_queries = num_queries + $2,
                                   last_used = GREATEST(last_used, $3)
               WHERE access_key = $1""",
            [(key, n, when) for key, (n, when) in counts.items()],
        )


class KeypairCache:
    """Keypair lookups for authentication, cached briefly, with batched usage writes.

    Authentication runs on every request; a database round trip each time would cost
    more than the rest of the request. A change made through this process invalidates
    the entry at once; a change made elsewhere is seen within `ttl` seconds.
    """

    def __init__(self, repo: KeypairRepository, *, ttl: float, flush_interval: float) -> None:
        self.repo = repo
        self.ttl = ttl
        self.flush_interval = flush_interval
        self._entries: dict[str, tuple[float, Keypair | None]] = {}
        self._usage: collections.Counter[str] = collections.Counter()
        self._last_used: dict[str, datetime] = {}

    async def get(self, access_key: str) -> Keypair | None:
        now = time.monotonic()
        cached = self._entries.get(access_key)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        keypair = await self.repo.get(access_key)
        if len(self._entries) > 100_000:
            # A flood of random access keys must not grow memory without bound.
            self._entries.clear()
        self._entries[access_key] = (now, keypair)
        return keypair

    def invalidate(self, access_key: str) -> None:
        self._entries.pop(access_key, None)

    def record_use(self, access_key: str) -> None:
        self._usage[access_key] += 1
        self._last_used[access_key] = datetime.now(UTC)

    async def flush(self) -> None:
        if not self._usage:
            return
        counts = {key: (n, self._last_used[key]) for key, n in self._usage.items()}
        self._usage.clear()
        self._last_used.clear()
        try:
            await self.repo.record_usage(counts)
        except Exception:
            # Usage counters are bookkeeping: losing one flush must not take the API down.
            log.exception("could not record keypair usage for %d keys", len(counts))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush usage counters periodically; flush once more when cancelled."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self.flush_interval)
                await self.flush()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.flush()
