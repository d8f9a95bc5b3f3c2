"""SQL for the ``vfolder_invitations`` table: offers of a folder from user to user."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import attrs

from crucible.db.pool import Executor
from crucible.db.queries.columns import Row, hex_id


@attrs.frozen
class Invitation(Row):
    id: str
    vfolder_id: str
    vfolder_name: str
    inviter: str
    invitee: str
    permission: str
    state: str
    created_at: datetime

    @classmethod
    def converted(cls, row: Any) -> dict[str, Any]:
        return {"id": hex_id(row["id"]), "vfolder_id": hex_id(row["vfolder_id"])}


@attrs.frozen
class PendingOffer(Row):
    """A pending invitation being accepted: which folder, which right, whose."""

    vfolder_id: uuid.UUID
    permission: str
    name: str
    owner_access_key: str


async def count_pending(ex: Executor, folder_id: str, inviter: str, invitee: str) -> int:
    return int(
        await ex.fetchval(
            """SELECT count(*) FROM vfolder_invitations WHERE vfolder_id = $1
               AND inviter = $2 AND invitee = $3 AND state = 'pending'""",
            uuid.UUID(folder_id),
            inviter,
            invitee,
        )
    )


async def insert(ex: Executor, folder_id: str, inviter: str, invitee: str, permission: str) -> None:
    await ex.execute(
        """INSERT INTO vfolder_invitations (id, vfolder_id, inviter, invitee, permission)
           VALUES ($1, $2, $3, $4, $5)""",
        uuid.uuid4(),
        uuid.UUID(folder_id),
        inviter,
        invitee,
        permission,
    )


async def pending_for(ex: Executor, invitee: str) -> list[Invitation]:
    rows = await ex.fetch(
        """SELECT i.id, i.vfolder_id, f.name AS vfolder_name, i.inviter, i.invitee,
                  i.permission, i.state, i.created_at
           FROM vfolder_invitations i JOIN vfolders f ON f.id = i.vfolder_id
           WHERE i.invitee = $1 AND i.state = 'pending' ORDER BY i.created_at""",
        invitee,
    )
    return Invitation.from_rows(rows)


async def lock_pending(ex: Executor, invitation_id: uuid.UUID, invitee: str) -> PendingOffer | None:
    """The pending invitation of `invitee`, its row locked until the caller's transaction
    ends; None when there is none."""
    row = await ex.fetchrow(
        """SELECT i.vfolder_id, i.permission, f.name, f.owner_access_key
           FROM vfolder_invitations i JOIN vfolders f ON f.id = i.vfolder_id
           WHERE i.id = $1 AND i.invitee = $2 AND i.state = 'pending'
           FOR UPDATE OF i""",
        invitation_id,
        invitee,
    )
    return PendingOffer.from_optional(row)


async def mark_accepted(ex: Executor, invitation_id: uuid.UUID) -> None:
    await ex.execute(
        """UPDATE vfolder_invitations SET state = 'accepted', modified_at = now()
           WHERE id = $1""",
        invitation_id,
    )


async def reject(ex: Executor, invitation_id: uuid.UUID, invitee: str) -> bool:
    """Reject `invitee`'s pending invitation; False when there is none."""
    row = await ex.fetchrow(
        """UPDATE vfolder_invitations SET state = 'rejected', modified_at = now()
           WHERE id = $1 AND invitee = $2 AND state = 'pending' RETURNING id""",
        invitation_id,
        invitee,
    )
    return row is not None
