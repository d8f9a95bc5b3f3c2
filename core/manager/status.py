"""The manager's operational status (spec 8), shared by every manager process."""

from __future__ import annotations

import enum

from crucible.db.pool import Database
from crucible.db.queries import manager_state


class ManagerStatus(enum.StrEnum):
    RUNNING = "running"
    FROZEN = "frozen"
    PREPARING = "preparing"
    TERMINATED = "terminated"


class ManagerStatusStore:
    """The cluster-wide status lives in PostgreSQL, so freezing one manager freezes all.

    A process that is still starting or already stopping reports its own status instead.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.local: ManagerStatus | None = ManagerStatus.PREPARING

    async def get(self) -> ManagerStatus:
        if self.local is not None:
            return self.local
        value = await manager_state.get(self.db, "status")
        return ManagerStatus(value) if value else ManagerStatus.RUNNING

    async def set(self, status: ManagerStatus) -> None:
        await manager_state.put(self.db, "status", status.value)
