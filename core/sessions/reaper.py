"""The idle reaper: sessions without an API call for ``sessions.idle_timeout`` seconds
are destroyed (reason ``idle-timeout``), looked for every ``sessions.reap_interval``."""

from __future__ import annotations

import logging

import attrs
import trio

from crucible.db.pool import Database
from crucible.db.queries import kernels
from crucible.periodic import repeat
from crucible.sessions.lifecycle import SessionLifecycle

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class IdleReaper:
    db: Database
    #: Destroys what is reaped.
    sessions: SessionLifecycle
    #: Seconds without an API call; 0 disables the reaper.
    idle_timeout: float
    #: Seconds between scans.
    interval: float

    async def reap_idle(self) -> int:
        if self.idle_timeout <= 0:
            return 0
        idle = await kernels.idle_sessions(self.db, self.idle_timeout)
        for session in idle:
            log.info("reaping idle session %s", session.token)
            await self.sessions.destroy_quietly(session, "idle-timeout")
        return len(idle)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await repeat(
            self.reap_idle,
            self.interval,
            log=log,
            failure="idle reaper failed",
            task_status=task_status,
        )
