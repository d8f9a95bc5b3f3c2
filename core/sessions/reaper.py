"""The idle reaper: sessions without an API call for ``sessions.idle_timeout`` seconds
are destroyed (reason ``idle-timeout``), looked for every ``sessions.reap_interval``."""

from __future__ import annotations

import logging

import trio

from crucible.db.pool import Database
from crucible.db.queries import kernels
from crucible.sessions.lifecycle import SessionLifecycle

log = logging.getLogger(__name__)


class IdleReaper:
    def __init__(
        self, db: Database, sessions: SessionLifecycle, *, idle_timeout: float, interval: float
    ) -> None:
        self.db = db
        self.sessions = sessions
        #: 0 disables the reaper.
        self.idle_timeout = idle_timeout
        self.interval = interval

    async def reap_idle(self) -> int:
        if self.idle_timeout <= 0:
            return 0
        idle = await kernels.idle_sessions(self.db, self.idle_timeout)
        for session in idle:
            log.info("reaping idle session %s", session.token)
            await self.sessions.destroy_quietly(session, "idle-timeout")
        return len(idle)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            try:
                await self.reap_idle()
            except Exception:
                log.exception("idle reaper failed")
