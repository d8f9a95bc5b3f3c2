"""Folders, grants and invitations: the transactions that keep their rules (one name per
access key, owner caps, one pending invitation per folder, inviter and invitee). The SQL
is in `crucible.db.queries` (``vfolders``, ``vfolder_permissions``,
``vfolder_invitations``)."""

from __future__ import annotations

import uuid

from crucible.db.pool import Connection, Database
from crucible.db.queries import kernels, keypairs, locks, vfolder_invitations, vfolder_permissions
from crucible.db.queries import vfolders as folders
from crucible.db.queries.vfolder_invitations import Invitation
from crucible.db.queries.vfolders import Access, VFolder

__all__ = [
    "OWNER_ONLY",
    "PERMISSIONS",
    "Access",
    "Invitation",
    "NameTaken",
    "TooManyFolders",
    "VFolder",
    "VFolderRepository",
    "permits",
]

#: Grant levels, weakest first; owners hold ``rd`` implicitly (spec 6.1).
PERMISSIONS = ("ro", "rw", "rd")
OWNER_ONLY = "owner"


def permits(granted: str, needed: str) -> bool:
    return PERMISSIONS.index(granted) >= PERMISSIONS.index(needed)


class NameTaken(Exception):
    pass


class TooManyFolders(Exception):
    """The owner already has as many folders as their resource policy allows."""


def _names_lock(access_key: str) -> str:
    # One access key's creates and accepts are serialised, so that a name check cannot
    # race with another one of them.
    return "vfolder:" + access_key


class VFolderRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def accessible(self, access_key: str) -> list[Access]:
        return await folders.accessible(self.db, access_key)

    async def by_name(self, access_key: str, name: str) -> Access | None:
        return await folders.by_name(self.db, access_key, name)

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
            await locks.hold_named(conn, _names_lock(owner))
            if await folders.count_named(conn, owner, name):
                raise NameTaken(name)
            if max_owned is not None and await folders.count_owned(conn, owner) >= max_owned:
                raise TooManyFolders(max_owned)
            return await folders.insert(
                conn, owner=owner, name=name, host=host, max_files=max_files, max_size=max_size
            )

    async def all_folders(self) -> list[VFolder]:
        return await folders.every_folder(self.db)

    async def delete_row(self, conn: Connection, folder_id: str) -> None:
        await folders.delete(conn, folder_id)

    async def lock_for_delete(self, conn: Connection, folder_id: str) -> list[str]:
        """Lock the folder row against new mounts; return live sessions mounting it."""
        await folders.lock_for_update(conn, folder_id)
        return await kernels.sessions_mounting(conn, folder_id)

    # -- invitations ------------------------------------------------------------------------

    async def user_id(self, access_key: str) -> str | None:
        return await keypairs.user_id_of(self.db, access_key)

    async def invite(
        self, folder_id: str, inviter: str, user_ids: list[str], permission: str
    ) -> list[str]:
        invited = []
        async with self.db.transaction() as conn:
            await locks.hold_named(conn, "vfolder-invite:" + folder_id)
            for user_id in user_ids:
                if user_id == inviter:
                    continue
                exists = await keypairs.count_of_user(conn, user_id)
                pending = await vfolder_invitations.count_pending(conn, folder_id, inviter, user_id)
                if not exists or pending:
                    continue
                await vfolder_invitations.insert(conn, folder_id, inviter, user_id, permission)
                invited.append(user_id)
        return invited

    async def pending_for(self, invitee: str) -> list[Invitation]:
        return await vfolder_invitations.pending_for(self.db, invitee)

    async def accept(self, invitation_id: uuid.UUID, invitee: str, access_key: str) -> str:
        """Grant the invitation to `access_key`; return the folder's name.

        Raises LookupError (no such pending invitation) or NameTaken.
        """
        async with self.db.transaction() as conn:
            await locks.hold_named(conn, _names_lock(access_key))
            offer = await vfolder_invitations.lock_pending(conn, invitation_id, invitee)
            if offer is None:
                raise LookupError(str(invitation_id))
            if offer.owner_access_key == access_key:
                raise NameTaken(offer.name)
            if await folders.count_named(conn, access_key, offer.name, other_than=offer.vfolder_id):
                raise NameTaken(offer.name)
            # A second invitation to the same folder upgrades or downgrades the grant.
            await vfolder_permissions.grant(conn, offer.vfolder_id, access_key, offer.permission)
            await vfolder_invitations.mark_accepted(conn, invitation_id)
            return offer.name

    async def reject(self, invitation_id: uuid.UUID, invitee: str) -> bool:
        return await vfolder_invitations.reject(self.db, invitation_id, invitee)
