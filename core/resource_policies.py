"""Resource policies: named caps a keypair lives under (sessions, CPU, memory, vfolders).

A keypair names its policy (``keypairs.resource_policy``). The policy caps

* live sessions at once (together with the keypair's own ``concurrency_limit``: the
  smaller wins) — beyond it session creation answers ``412 quota-exceeded``;
* cores and memory: each new session's request is capped to them (as image limits are,
  spec 4.2), and the live sessions of the keypair together may not exceed them
  (``412 quota-exceeded``);
* the number of virtual folders the keypair owns and the size of each (enforced by the
  vfolder API through `vfolder_limits`).

Policies come from TOML (``[resource_policies.NAME]``, synced by `sync_from_config` at
start-up) and from the admin GraphQL API.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from crucible import errors
from crucible.config import ResourcePolicyConfig
from crucible.db.pool import Connection, Database
from crucible.db.statements import update_statement
from crucible.sessions.resources import Resources

_COLUMNS = (
    "name, max_concurrent_sessions, max_cpu_cores, max_memory_bytes, max_vfolder_count, "
    "max_vfolder_size_bytes, created_at"
)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@attrs.frozen
class ResourcePolicy:
    name: str
    max_concurrent_sessions: int
    #: None: no cap.
    max_cpu_cores: float | None
    max_memory_bytes: int | None
    max_vfolder_count: int | None
    max_vfolder_size_bytes: int | None
    created_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> ResourcePolicy:
        return cls(
            name=row["name"],
            max_concurrent_sessions=row["max_concurrent_sessions"],
            max_cpu_cores=_optional_float(row["max_cpu_cores"]),
            max_memory_bytes=row["max_memory_bytes"],
            max_vfolder_count=row["max_vfolder_count"],
            max_vfolder_size_bytes=row["max_vfolder_size_bytes"],
            created_at=row["created_at"],
        )

    @classmethod
    def from_config(cls, name: str, config: ResourcePolicyConfig) -> ResourcePolicy:
        # In TOML there is no null, so 0 spells "no cap".
        return cls(
            name=name,
            max_concurrent_sessions=config.max_concurrent_sessions,
            max_cpu_cores=config.max_cpu_cores or None,
            max_memory_bytes=config.max_memory_bytes or None,
            max_vfolder_count=config.max_vfolder_count or None,
            max_vfolder_size_bytes=config.max_vfolder_size_bytes or None,
        )

    def cap(self, resources: Resources) -> Resources:
        """`resources` no larger than one session may get under this policy."""
        cpu, mem = resources.cpu, resources.mem
        if self.max_cpu_cores is not None:
            cpu = min(cpu, self.max_cpu_cores)
        if self.max_memory_bytes is not None:
            mem = min(mem, self.max_memory_bytes)
        return attrs.evolve(resources, cpu=cpu, mem=mem)

    def check_session_quota(
        self,
        *,
        concurrency_limit: int,
        live: int,
        used_cpu: float,
        used_mem: int,
        wanted: Resources,
    ) -> None:
        """Raise `QuotaExceeded` unless one more session of `wanted` fits."""
        limit = min(concurrency_limit, self.max_concurrent_sessions)
        if live >= limit:
            raise errors.QuotaExceeded(f"This keypair may run {limit} sessions at once.")
        # A small tolerance: slots are stored as floats rounded to thousandths.
        if self.max_cpu_cores is not None and used_cpu + wanted.cpu > self.max_cpu_cores + 1e-6:
            raise errors.QuotaExceeded(
                f"Resource policy {self.name!r} allows {self.max_cpu_cores:g} cores in total; "
                f"{used_cpu:g} are in use."
            )
        if self.max_memory_bytes is not None and used_mem + wanted.mem > self.max_memory_bytes:
            raise errors.QuotaExceeded(
                f"Resource policy {self.name!r} allows {self.max_memory_bytes} bytes of memory "
                f"in total; {used_mem} are in use."
            )


#: What applies when a keypair's policy row is gone (it cannot be: a foreign key guards
#: it, but a permissive fallback beats refusing every session over a bookkeeping gap).
FALLBACK = ResourcePolicy("default", 5, None, None, None, None)


class ResourcePolicyStore:
    """SQL for the ``resource_policies`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, name: str) -> ResourcePolicy | None:
        row = await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM resource_policies WHERE name = $1", name
        )
        return ResourcePolicy.from_row(row) if row else None

    async def for_keypair(self, conn: Connection, access_key: str) -> ResourcePolicy:
        """The policy of `access_key`, read on `conn` (inside the caller's transaction)."""
        row = await conn.fetchrow(
            f"""SELECT {", ".join("p." + c.strip() for c in _COLUMNS.split(","))}
                FROM keypairs k JOIN resource_policies p ON p.name = k.resource_policy
                WHERE k.access_key = $1""",
            access_key,
        )
        return ResourcePolicy.from_row(row) if row else FALLBACK

    async def list(self) -> list[ResourcePolicy]:
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM resource_policies ORDER BY name")
        return [ResourcePolicy.from_row(row) for row in rows]

    async def upsert(self, policy: ResourcePolicy) -> ResourcePolicy:
        row = await self.db.fetchrow(
            f"""INSERT INTO resource_policies (name, max_concurrent_sessions, max_cpu_cores,
                    max_memory_bytes, max_vfolder_count, max_vfolder_size_bytes)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (name) DO UPDATE SET
                    max_concurrent_sessions = EXCLUDED.max_concurrent_sessions,
                    max_cpu_cores = EXCLUDED.max_cpu_cores,
                    max_memory_bytes = EXCLUDED.max_memory_bytes,
                    max_vfolder_count = EXCLUDED.max_vfolder_count,
                    max_vfolder_size_bytes = EXCLUDED.max_vfolder_size_bytes
                RETURNING {_COLUMNS}""",
            *_values(policy),
        )
        return ResourcePolicy.from_row(row)

    async def create(self, policy: ResourcePolicy) -> ResourcePolicy | None:
        """Insert `policy`; None when the name is taken."""
        row = await self.db.fetchrow(
            f"""INSERT INTO resource_policies (name, max_concurrent_sessions, max_cpu_cores,
                    max_memory_bytes, max_vfolder_count, max_vfolder_size_bytes)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}""",
            *_values(policy),
        )
        return ResourcePolicy.from_row(row) if row else None

    async def update(self, name: str, changes: Mapping[str, Any]) -> ResourcePolicy | None:
        """Set the given columns (None clears an optional cap); None when no such policy."""
        allowed = (
            "max_concurrent_sessions",
            "max_cpu_cores",
            "max_memory_bytes",
            "max_vfolder_count",
            "max_vfolder_size_bytes",
        )
        values = {col: _column_value(col, value) for col, value in changes.items()}
        statement = update_statement("resource_policies", "name", values, allowed, _COLUMNS)
        if statement is None:
            return await self.get(name)
        sql, args = statement
        row = await self.db.fetchrow(sql, name, *args)
        return ResourcePolicy.from_row(row) if row else None

    async def delete(self, name: str) -> str | None:
        """Delete the policy; returns why it could not be deleted, or None on success."""
        async with self.db.transaction() as conn:
            users = await conn.fetchval(
                "SELECT count(*) FROM keypairs WHERE resource_policy = $1", name
            )
            if users:
                return f"{users} keypair(s) still use resource policy {name!r}."
            status = await conn.execute("DELETE FROM resource_policies WHERE name = $1", name)
            if status.endswith(" 0"):
                return f"No resource policy named {name!r}."
        return None

    async def sync_from_config(self, policies: Mapping[str, ResourcePolicyConfig]) -> None:
        """Make the table agree with TOML for every policy TOML names (others stay)."""
        for name, config in policies.items():
            await self.upsert(ResourcePolicy.from_config(name, config))


def _column_value(column: str, value: Any) -> Any:
    if column == "max_cpu_cores" and value is not None:
        return Decimal(str(round(float(value), 3)))
    return value


def _values(policy: ResourcePolicy) -> tuple[Any, ...]:
    return (
        policy.name,
        policy.max_concurrent_sessions,
        _column_value("max_cpu_cores", policy.max_cpu_cores),
        policy.max_memory_bytes,
        policy.max_vfolder_count,
        policy.max_vfolder_size_bytes,
    )


async def vfolder_limits(db: Database, access_key: str) -> tuple[int | None, int | None]:
    """``(max folders owned, max bytes per folder)`` of `access_key`'s policy (None: no cap).

    For the vfolder API to call before creating a folder.
    """
    row = await db.fetchrow(
        """SELECT p.max_vfolder_count, p.max_vfolder_size_bytes
           FROM keypairs k JOIN resource_policies p ON p.name = k.resource_policy
           WHERE k.access_key = $1""",
        access_key,
    )
    if row is None:
        return None, None
    return row["max_vfolder_count"], row["max_vfolder_size_bytes"]
