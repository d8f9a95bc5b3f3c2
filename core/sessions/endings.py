"""How a session's end is recorded, whoever ends it (the user, the reaper, an agent's
report, a failed call): the row terminated once, the ``terminated`` event, its usage."""

from __future__ import annotations

import attrs

from crucible.db.pool import Database
from crucible.db.queries import kernels
from crucible.db.queries import pending as queue_rows
from crucible.protocol.stats import KernelStats
from crucible.sessions.events import SessionEvents
from crucible.usage import record_session_end


@attrs.frozen
class EndRecorder:
    db: Database
    #: Where ``terminated`` goes out to the session's event streams.
    events: SessionEvents

    async def record(
        self,
        session_id: str,
        reason: str,
        *,
        status: str = "TERMINATED",
        stats: KernelStats | None = None,
    ) -> None:
        """End kernel `session_id` for `reason` (``ERROR`` statuses keep theirs in the
        row's ``status_info``); a kernel that had ended already stays as it was."""
        ended = await kernels.mark_terminated(
            self.db,
            session_id,
            reason if status == "TERMINATED" else f"{status.lower()}: {reason}",
            stats,
        )
        if ended is not None:
            # Room freed (or a waiter's session gone): every manager's queue may move.
            await queue_rows.notify_queue_changed(self.db)
            self.events.publish(session_id, "terminated", reason)
            if ended.last_stat is not None:
                await record_session_end(self.db, ended.access_key, ended.last_stat)
