"""SQL for the ``resource_policies`` table: named caps a keypair lives under."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from crucible.config import ResourcePolicyConfig
from crucible.db.pool import Executor
from crucible.db.queries.columns import Row
from crucible.db.queries.keyed import KeyedRows
from crucible.db.statements import update_statement

_NAMES = (
    "name",
    "max_concurrent_sessions",
    "max_cpu_cores",
    "max_memory_bytes",
    "max_vfolder_count",
    "max_vfolder_size_bytes",
    "max_gpu_slots",
    "created_at",
)
_COLUMNS = ", ".join(_NAMES)
#: The columns `update` may set (None clears an optional cap).
UPDATABLE = _NAMES[1:-1]


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@attrs.frozen
class ResourcePolicy(Row):
    name: str
    max_concurrent_sessions: int
    #: None: no cap.
    max_cpu_cores: float | None
    max_memory_bytes: int | None
    max_vfolder_count: int | None
    max_vfolder_size_bytes: int | None
    created_at: datetime | None = None
    #: GPUs (whole devices or shares) one session may get, and all live ones together.
    max_gpu_slots: float | None = None

    @classmethod
    def converted(cls, row: Any) -> dict[str, Any]:
        return {
            "max_cpu_cores": _optional_float(row["max_cpu_cores"]),
            "max_gpu_slots": _optional_float(row["max_gpu_slots"]),
        }

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
            max_gpu_slots=config.max_gpu_slots or None,
        )


def _column_value(column: str, value: Any) -> Any:
    if column == "max_cpu_cores" and value is not None:
        return Decimal(str(round(float(value), 3)))
    if column == "max_gpu_slots" and value is not None:
        return Decimal(str(round(float(value), 2)))
    return value


def _values(policy: ResourcePolicy) -> tuple[Any, ...]:
    return tuple(_column_value(name, getattr(policy, name)) for name in _NAMES[:-1])


_INSERT = """INSERT INTO resource_policies (name, max_concurrent_sessions, max_cpu_cores,
                 max_memory_bytes, max_vfolder_count, max_vfolder_size_bytes, max_gpu_slots)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"""


_BY_NAME = KeyedRows(ResourcePolicy, "resource_policies", "name", _COLUMNS)


async def get(ex: Executor, name: str) -> ResourcePolicy | None:
    return await _BY_NAME.one(ex, name)


async def by_names(ex: Executor, names: Sequence[str]) -> list[ResourcePolicy]:
    return await _BY_NAME.many(ex, names)


async def listing(ex: Executor) -> list[ResourcePolicy]:
    rows = await ex.fetch(f"SELECT {_COLUMNS} FROM resource_policies ORDER BY name")
    return ResourcePolicy.from_rows(rows)


async def of_keypair(ex: Executor, access_key: str) -> ResourcePolicy | None:
    """The policy `access_key` lives under; None when there is no such keypair."""
    return ResourcePolicy.from_optional(
        await ex.fetchrow(
            f"""SELECT {", ".join("p." + name for name in _NAMES)}
                FROM keypairs k JOIN resource_policies p ON p.name = k.resource_policy
                WHERE k.access_key = $1""",
            access_key,
        )
    )


async def upsert(ex: Executor, policy: ResourcePolicy) -> ResourcePolicy:
    row = await ex.fetchrow(
        f"""{_INSERT}
            ON CONFLICT (name) DO UPDATE SET
                max_concurrent_sessions = EXCLUDED.max_concurrent_sessions,
                max_cpu_cores = EXCLUDED.max_cpu_cores,
                max_memory_bytes = EXCLUDED.max_memory_bytes,
                max_vfolder_count = EXCLUDED.max_vfolder_count,
                max_vfolder_size_bytes = EXCLUDED.max_vfolder_size_bytes,
                max_gpu_slots = EXCLUDED.max_gpu_slots
            RETURNING {_COLUMNS}""",
        *_values(policy),
    )
    return ResourcePolicy.from_row(row)


async def insert_new(ex: Executor, policy: ResourcePolicy) -> ResourcePolicy | None:
    """Insert `policy`; None when the name is taken."""
    return ResourcePolicy.from_optional(
        await ex.fetchrow(
            f"{_INSERT} ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}", *_values(policy)
        )
    )


async def update(ex: Executor, name: str, changes: Mapping[str, Any]) -> ResourcePolicy | None:
    """Set the `UPDATABLE` columns among `changes`; None when there is no such policy."""
    values = {column: _column_value(column, value) for column, value in changes.items()}
    statement = update_statement("resource_policies", "name", values, UPDATABLE, _COLUMNS)
    if statement is None:
        return await get(ex, name)
    sql, args = statement
    return ResourcePolicy.from_optional(await ex.fetchrow(sql, name, *args))


async def delete(ex: Executor, name: str) -> bool:
    """Delete the policy; False when there was none of that name."""
    status = await ex.execute("DELETE FROM resource_policies WHERE name = $1", name)
    return not status.endswith(" 0")
