"""Virtual folders mounted into a new session (``config.mounts``, spec 4.2): checked
before anything is created, recorded on the kernel row once it is placed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from crucible import errors
from crucible.db.pool import Database
from crucible.db.queries import kernels, vfolders
from crucible.keypairs import Keypair
from crucible.protocol.calls import Mount
from crucible.sessions.endings import EndRecorder
from crucible.sessions.model import Session
from crucible.vfolders.service import VFolderService

#: A mount as the kernel row keeps it (`VFolderService.resolve_mounts`).
MountRecord = dict[str, Any]


def as_call_mounts(mounts: Sequence[MountRecord]) -> tuple[Mount, ...]:
    """What the agent's ``create_kernel`` is told of `mounts`."""
    return tuple(Mount(m["source"], m["target"], m["read_only"]) for m in mounts)


@attrs.frozen
class SessionMounts:
    db: Database
    vfolders: VFolderService
    #: A session whose folder went away while it was placed ends here.
    endings: EndRecorder

    async def resolve(
        self, keypair: Keypair, token: str, requested: Sequence[tuple[str, str]]
    ) -> list[MountRecord]:
        """Check ``config.mounts`` before anything is created (a bad one is a 404).

        A request that will reuse a live session ignores its config (spec 4.2).
        """
        if not requested:
            return []
        if await kernels.live_session(self.db, keypair.access_key, token) is not None:
            return []
        return await self.vfolders.resolve_mounts(keypair, requested)

    async def attach(self, session: Session, mounts: list[MountRecord]) -> None:
        """Record the mounts on the kernel row, unless a folder was deleted meanwhile.

        The folder rows are share-locked: a concurrent folder delete (which locks them
        for update, then looks for live sessions mounting them) either sees these
        mounts and refuses, or has removed the folder, and the session fails here.
        """
        ids = [uuid.UUID(m["id"]) for m in mounts]
        async with self.db.transaction() as conn:
            if len(await vfolders.lock_existing(conn, ids)) == len(set(ids)):
                await kernels.set_mounts(conn, session.id, mounts)
                return
        await self.endings.record(session.id, "vfolder-deleted", status="ERROR")
        raise errors.VFolderNotFound("A folder to mount was deleted meanwhile.")
