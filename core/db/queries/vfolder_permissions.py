"""SQL for the ``vfolder_permissions`` table: folders granted to access keys other than
their owner's (read through `crucible.db.queries.vfolders.accessible`)."""

from __future__ import annotations

import uuid

from crucible.db.pool import Executor


async def grant(ex: Executor, folder_id: uuid.UUID, access_key: str, permission: str) -> None:
    """Grant `permission` on the folder to `access_key`, replacing an earlier grant."""
    await ex.execute(
        """INSERT INTO vfolder_permissions (vfolder_id, access_key, permission)
           VALUES ($1, $2, $3) ON CONFLICT (vfolder_id, access_key)
           DO UPDATE SET permission = EXCLUDED.permission""",
        folder_id,
        access_key,
        permission,
    )


async def delete_of_keypair(ex: Executor, access_key: str) -> None:
    await ex.execute("DELETE FROM vfolder_permissions WHERE access_key = $1", access_key)
