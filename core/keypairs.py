"""Keypairs: the tenants of Crucible (spec 2.5), their storage and a lookup cache."""

from __future__ import annotations

import collections
import logging
import time
from datetime import UTC, datetime
from typing import Any

import attrs
import trio

from crucible.db.pool import Database, Executor
from crucible.db.queries import kernels, keypairs, usage_daily, vfolder_permissions
from crucible.db.queries.keypairs import Keypair, NewKeypair
from crucible.periodic import flush_every

__all__ = [
    "MAX_USER_ID_LENGTH",
    "Keypair",
    "KeypairCache",
    "KeypairNotFound",
    "KeypairRepository",
    "NewKeypair",
]

log = logging.getLogger(__name__)

#: Longest user id, in characters (the ``keypairs.user_id`` column's CHECK).
MAX_USER_ID_LENGTH = 256


class KeypairNotFound(LookupError):
    pass


@attrs.frozen
class KeypairRepository:
    """Keypairs: their creation, changes and deletion (the SQL is
    `crucible.db.queries.keypairs`)."""

    db: Database

    async def get(self, access_key: str) -> Keypair | None:
        return await keypairs.get(self.db, access_key)

    async def list(self, *, user_id: str | None = None) -> list[Keypair]:
        return await keypairs.listing(self.db, user_id=user_id)

    async def create(self, new: NewKeypair, *, on: Executor | None = None) -> Keypair:
        """Keypair `new`, written on `on` (the caller's transaction) or on its own."""
        return await keypairs.insert(self.db if on is None else on, new)

    async def update(self, access_key: str, changes: dict[str, Any]) -> Keypair | None:
        """Set the given columns (is_active, is_admin, resource_policy, concurrency_limit,
        rate_limit); None when there is no such keypair."""
        return await keypairs.update(self.db, access_key, changes)

    async def delete(self, access_key: str) -> str | None:
        """Delete a keypair and its history; returns why it cannot be, or None when done.

        A keypair with live sessions or owned folders stays: deleting it would strand
        containers or data. Its ended sessions, usage records and folder shares go with it.
        """
        async with self.db.transaction() as conn:
            found = await keypairs.dependents(conn, access_key)
            if not found.found:
                return f"No keypair {access_key!r}."
            if found.live_sessions:
                return f"The keypair still has {found.live_sessions} live session(s)."
            if found.folders:
                return f"The keypair still owns {found.folders} virtual folder(s)."
            await vfolder_permissions.delete_of_keypair(conn, access_key)
            await kernels.delete_of_keypair(conn, access_key)
            await usage_daily.delete_of_keypair(conn, access_key)
            await keypairs.delete(conn, access_key)
        return None

    async def set_active(self, access_key: str, active: bool) -> Keypair:
        keypair = await keypairs.set_active(self.db, access_key, active)
        if keypair is None:
            raise KeypairNotFound(access_key)
        return keypair

    async def ensure_bootstrap_admin(
        self, admin: NewKeypair, *, keys_given: bool
    ) -> tuple[Keypair, bool]:
        """Return the bootstrap admin keypair, creating it (as `admin`) on first start.

        With `keys_given` (the ``[bootstrap]`` table names them) `admin`'s keys are that
        keypair, created if missing; otherwise the oldest active admin keypair is reused,
        or `admin` is made. Returns ``(keypair, created)``.
        """
        async with self.db.transaction() as conn:
            # Serialise concurrent first starts so only one admin is invented.
            await keypairs.lock_table(conn)
            if keys_given:
                found = await keypairs.get(conn, admin.access_key)
            else:
                found = await keypairs.oldest_active_admin(conn)
            if found is not None:
                return found, False
            return await self.create(admin, on=conn), True

    async def record_usage(self, counts: dict[str, tuple[int, datetime]]) -> None:
        await keypairs.record_usage(self.db, counts)


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
            # Usage counters are bookkeeping: a failed flush must not take the API down,
            # and what it could not write (one statement: all or nothing) is kept for
            # the next one, so a crash loses at most one interval's counts.
            log.exception("could not record keypair usage for %d keys; kept", len(counts))
            for key, (n, last_used) in counts.items():
                self._usage[key] += n
                self._last_used[key] = max(last_used, self._last_used.get(key, last_used))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush usage counters periodically; flush once more when cancelled."""
        await flush_every(self.flush, self.flush_interval, task_status=task_status)
