"""SQL for folders, grants and invitations (tables from migration 0001)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import attrs

from crucible.db.pool import Database

#: Grant levels, weakest first; owners hold ``rd`` implicitly (spec 6.1).
PERMISSIONS = ("ro", "rw", "rd")
OWNER_ONLY = "owner"

_FOLDER_COLUMNS = "f.id, f.name, f.host, f.owner_access_key, f.max_files, f.max_size, f.created_at"


def permits(granted: str, needed: str) -> bool:
    return PERMISSIONS.index(granted) >= PERMISSIONS.index(needed)


@attrs.frozen
class VFolder:
    id: str  # 32 hex characters (spec 6.1)
    name: str
    host: str
    owner_access_key: str
    max_files: int
    max_size: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> VFolder:
        return cls(
            id=uuid.UUID(str(row["id"])).hex,
            name=row["name"],
            host=row["host"],
            owner_access_key=row["owner_access_key"],
            max_files=row["max_files"],
            max_size=row["max_size"],
            created_at=row["created_at"],
        )


@attrs.frozen
class Access:
    """A folder as one access key sees it: under which name and with which right."""

    folder: VFolder
    is_owner: bool
    permission: str

    @classmethod
    def from_row(cls, row: Any) -> Access:
        return cls(VFolder.from_row(row), row["is_owner"], row["permission"])


@attrs.frozen
class Invitation:
    id: str
    vfolder_id: str
    vfolder_name: str
    inviter: str
    invitee: str
    permission: str
    state: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Invitation:
        return cls(
            id=uuid.UUID(str(row["id"])).hex,
            vfolder_id=uuid.UUID(str(row["vfolder_id"])).hex,
            vfolder_name=row["vfolder_name"],
            inviter=row["inviter"],
            invitee=row["invitee"],
            permission=row["permission"],
            state=row["state"],
            created_at=row["created_at"],
        )


# Folders an access key owns, and folders granted to it, in one shape.
_ACCESSIBLE = f"""
    SELECT {_FOLDER_COLUMNS}, true AS is_owner, 'rd' AS permission
      FROM vfolders f WHERE f.owner_access_key = $1
    UNION ALL
    SELECT {_FOLDER_COLUMNS}, false AS is_owner, p.permission
      FROM vfolders f JOIN vfolder_permissions p ON p.vfolder_id = f.id
     WHERE p.access_key = $1 AND f.owner_access_key <> $1
"""


class NameTaken(Exception):
    pass


class TooManyFolders(Exception):
    """The owner already has as many folders as their resource policy allows."""


class VFolderRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def accessible(self, access_key: str) -> list[Access]:
        rows = await self.db.fetch(
            f"SELECT * FROM ({_ACCESSIBLE}) a ORDER BY created_at, name", access_key
        )
        return [Access.from_row(row) for row in rows]

    async def by_name(self, access_key: str, name: str) -> Access | None:
        row = await self.db.fetchrow(
            f"SELECT * FROM ({_ACCESSIBLE}) a WHERE name = $2 ORDER BY is_owner DESC LIMIT 1",
            access_key,
            name,
        )
        return Access.from_row(row) if row else None

    async def create(
        self,
        owner: str,
        name: str,
        host: str,
        *,
        max_files: int,
        max_size: int,
        max_owned: int | None = None,
    ) -> VFolder:
        async with self.db.transaction() as conn:
            # One access key's creates and accepts are serialised, so the name check
            # below cannot race with another one of them.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('vfolder:' || $1))", owner)
            taken = await conn.fetchval(
                f"SELECT count(*) FROM ({_ACCESSIBLE}) a WHERE name = $2", owner, name
            )
            if taken:
                raise NameTaken(name)
            if max_owned is not None:
                owned = await conn.fetchval(
                    "SELECT count(*) FROM vfolders WHERE owner_access_key = $1", owner
                )
                if owned >= max_owned:
                    raise TooManyFolders(max_owned)
            row = await conn.fetchrow(
                f"""INSERT INTO vfolders AS f (id, host, name, owner_access_key, max_files,
                                               max_size)
                    VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_FOLDER_COLUMNS}""",
                uuid.uuid4(),
                host,
                name,
                owner,
                max_files,
                max_size,
            )
            return VFolder.from_row(row)

    async def all_folders(self) -> list[VFolder]:
        rows = await self.db.fetch(f"SELECT {_FOLDER_COLUMNS} FROM vfolders f")
        return [VFolder.from_row(row) for row in rows]

    async def delete_row(self, conn: Any, folder_id: str) -> None:
        await conn.execute("DELETE FROM vfolders WHERE id = $1", uuid.UUID(folder_id))

    async def lock_for_delete(self, conn: Any, folder_id: str) -> list[str]:
        """Lock the folder row against new mounts; return live sessions mounting it."""
        await conn.execute("SELECT 1 FROM vfolders WHERE id = $1 FOR UPDATE", uuid.UUID(folder_id))
        rows = await conn.fetch(
            """SELECT sess_id FROM kernels WHERE status <> 'TERMINATED' AND role = 'master'
               AND mounts @> $1::jsonb ORDER BY sess_id""",
            json.dumps([{"id": folder_id}]),
        )
        return [row["sess_id"] for row in rows]

    # -- invitations ------------------------------------------------------------------------

    async def user_id(self, access_key: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT user_id FROM keypairs WHERE access_key = $1", access_key
        )
        return str(value) if value is not None else None

    async def invite(
        self, folder_id: str, inviter: str, user_ids: list[str], permission: str
    ) -> list[str]:
        invited = []
        async with self.db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('vfolder-invite:' || $1))", folder_id
            )
            for user_id in user_ids:
                if user_id == inviter:
                    continue
                exists = await conn.fetchval(
                    "SELECT count(*) FROM keypairs WHERE user_id = $1", user_id
                )
                pending = await conn.fetchval(
                    """SELECT count(*) FROM vfolder_invitations WHERE vfolder_id = $1
                       AND inviter = $2 AND invitee = $3 AND state = 'pending'""",
                    uuid.UUID(folder_id),
                    inviter,
                    user_id,
                )
                if not exists or pending:
                    continue
                await conn.execute(
                    """INSERT INTO vfolder_invitations (id, vfolder_id, inviter, invitee,
                                                        permission)
                       VALUES ($1, $2, $3, $4, $5)""",
                    uuid.uuid4(),
                    uuid.UUID(folder_id),
                    inviter,
                    user_id,
                    permission,
                )
                invited.append(user_id)
        return invited

    async def pending_for(self, invitee: str) -> list[Invitation]:
        rows = await self.db.fetch(
            """SELECT i.id, i.vfolder_id, f.name AS vfolder_name, i.inviter, i.invitee,
                      i.permission, i.state, i.created_at
               FROM vfolder_invitations i JOIN vfolders f ON f.id = i.vfolder_id
               WHERE i.invitee = $1 AND i.state = 'pending' ORDER BY i.created_at""",
            invitee,
        )
        return [Invitation.from_row(row) for row in rows]

    async def accept(self, invitation_id: uuid.UUID, invitee: str, access_key: str) -> str:
        """Grant the invitation to `access_key`; return the folder's name.

        Raises LookupError (no such pending invitation) or NameTaken.
        """
        async with self.db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext('vfolder:' || $1))", access_key
            )
            row = await conn.fetchrow(
                """SELECT i.vfolder_id, i.permission, f.name, f.owner_access_key
                   FROM vfolder_invitations i JOIN vfolders f ON f.id = i.vfolder_id
                   WHERE i.id = $1 AND i.invitee = $2 AND i.state = 'pending'
                   FOR UPDATE OF i""",
                invitation_id,
                invitee,
            )
            if row is None:
                raise LookupError(str(invitation_id))
            if row["owner_access_key"] == access_key:
                raise NameTaken(row["name"])
            taken = await conn.fetchval(
                f"""SELECT count(*) FROM ({_ACCESSIBLE}) a WHERE name = $2 AND id <> $3""",
                access_key,
                row["name"],
                row["vfolder_id"],
            )
            if taken:
                raise NameTaken(row["name"])
            # A second invitation to the same folder upgrades or downgrades the grant.
            await conn.execute(
                """INSERT INTO vfolder_permissions (vfolder_id, access_key, permission)
                   VALUES ($1, $2, $3) ON CONFLICT (vfolder_id, access_key)
                   DO UPDATE SET permission = EXCLUDED.permission""",
                row["vfolder_id"],
                access_key,
                row["permission"],
            )
            await conn.execute(
                """UPDATE vfolder_invitations SET state = 'accepted', modified_at = now()
                   WHERE id = $1""",
                invitation_id,
            )
            return str(row["name"])

    async def reject(self, invitation_id: uuid.UUID, invitee: str) -> bool:
        row = await self.db.fetchrow(
            """UPDATE vfolder_invitations SET state = 'rejected', modified_at = now()
               WHERE id = $1 AND invitee = $2 AND state = 'pending' RETURNING id""",
            invitation_id,
            invitee,
        )
        return row is not None

    async def touch(self, folder_id: str) -> None:
        await self.db.execute(
            "UPDATE vfolders SET last_used = now() WHERE id = $1", uuid.UUID(folder_id)
        )
