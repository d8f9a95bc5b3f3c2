"""SQL for the ``vfolders`` table: virtual folders, as their owners and grantees see them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from crucible.db.pool import Executor
from crucible.db.queries.columns import Row, hex_id

_COLUMNS = (
    "f.id, f.name, f.host, f.owner_access_key, f.max_files, f.max_size, f.created_at, f.last_used"
)


@attrs.frozen
class VFolder(Row):
    id: str  # 32 hex characters (spec 6.1)
    name: str
    host: str
    owner_access_key: str
    max_files: int
    max_size: int  # bytes
    created_at: datetime
    last_used: datetime | None

    @classmethod
    def converted(cls, row: Any) -> dict[str, Any]:
        return {"id": hex_id(row["id"])}


@attrs.frozen
class Access(Row):
    """A folder as one access key sees it: under which name and with which right."""

    folder: VFolder
    is_owner: bool
    permission: str

    @classmethod
    def converted(cls, row: Any) -> dict[str, Any]:
        return {"folder": VFolder.from_row(row)}


# Folders an access key owns, and folders granted to it (``vfolder_permissions``), in
# one shape.
_ACCESSIBLE = f"""
    SELECT {_COLUMNS}, true AS is_owner, 'rd' AS permission
      FROM vfolders f WHERE f.owner_access_key = $1
    UNION ALL
    SELECT {_COLUMNS}, false AS is_owner, p.permission
      FROM vfolders f JOIN vfolder_permissions p ON p.vfolder_id = f.id
     WHERE p.access_key = $1 AND f.owner_access_key <> $1
"""


def _folders(rows: list[Any]) -> list[VFolder]:
    return VFolder.from_rows(rows)


async def accessible(ex: Executor, access_key: str) -> list[Access]:
    rows = await ex.fetch(f"SELECT * FROM ({_ACCESSIBLE}) a ORDER BY created_at, name", access_key)
    return Access.from_rows(rows)


async def by_name(ex: Executor, access_key: str, name: str) -> Access | None:
    """The folder `access_key` knows as `name` (its own before one granted to it)."""
    row = await ex.fetchrow(
        f"SELECT * FROM ({_ACCESSIBLE}) a WHERE name = $2 ORDER BY is_owner DESC LIMIT 1",
        access_key,
        name,
    )
    return Access.from_optional(row)


async def count_named(
    ex: Executor, access_key: str, name: str, *, other_than: uuid.UUID | None = None
) -> int:
    """How many folders `access_key` knows as `name` (`other_than` aside)."""
    return int(
        await ex.fetchval(
            f"""SELECT count(*) FROM ({_ACCESSIBLE}) a
                WHERE name = $2 AND ($3::uuid IS NULL OR id <> $3)""",
            access_key,
            name,
            other_than,
        )
    )


async def count_owned(ex: Executor, owner: str) -> int:
    return int(
        await ex.fetchval("SELECT count(*) FROM vfolders WHERE owner_access_key = $1", owner)
    )


async def insert(
    ex: Executor, *, owner: str, name: str, host: str, max_files: int, max_size: int
) -> VFolder:
    """A new folder with a fresh id."""
    row = await ex.fetchrow(
        f"""INSERT INTO vfolders AS f (id, host, name, owner_access_key, max_files, max_size)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}""",
        uuid.uuid4(),
        host,
        name,
        owner,
        max_files,
        max_size,
    )
    return VFolder.from_row(row)


async def every_folder(ex: Executor) -> list[VFolder]:
    return _folders(await ex.fetch(f"SELECT {_COLUMNS} FROM vfolders f"))


async def of_owners(ex: Executor, owners: Sequence[str]) -> list[VFolder]:
    """The folders `owners` own, oldest first."""
    return _folders(
        await ex.fetch(
            f"""SELECT {_COLUMNS} FROM vfolders f WHERE f.owner_access_key = ANY($1::text[])
                ORDER BY f.created_at, f.name""",
            list(owners),
        )
    )


async def lock_for_update(ex: Executor, folder_id: str) -> None:
    """Lock the folder's row until the caller's transaction ends: a concurrent mount
    (`lock_existing`) waits, then finds it gone."""
    await ex.execute("SELECT 1 FROM vfolders WHERE id = $1 FOR UPDATE", uuid.UUID(folder_id))


async def lock_existing(ex: Executor, folder_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Share-lock the rows of `folder_ids` that still exist; their ids."""
    rows = await ex.fetch(
        "SELECT id FROM vfolders WHERE id = ANY($1::uuid[]) FOR SHARE", list(folder_ids)
    )
    return {row["id"] for row in rows}


async def delete(ex: Executor, folder_id: str) -> None:
    await ex.execute("DELETE FROM vfolders WHERE id = $1", uuid.UUID(folder_id))
