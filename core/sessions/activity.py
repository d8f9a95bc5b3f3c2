"""Batched bookkeeping of session activity (last_active, num_queries, executions).

Execute is the hot path; one UPDATE per call would cost more than the relay itself.
Counts gather here and are written once per interval (``sessions.activity_flush_interval``)
and once more when the manager stops. What a write could not store stays for the next
one, so the counts lost to a crash are at most one interval's (plus whatever piled up
while the database refused them).
"""

from __future__ import annotations

import collections
import logging

import trio

from crucible.db.pool import Database
from crucible.db.queries import kernels
from crucible.periodic import flush_every
from crucible.usage import record_executions

log = logging.getLogger(__name__)


class ActivityRecorder:
    def __init__(self, db: Database, *, interval: float) -> None:
        self.db = db
        self.interval = interval
        self._queries: collections.Counter[str] = collections.Counter()
        self._executions: collections.Counter[str] = collections.Counter()  # per access key

    def touch(self, session_id: str, access_key: str, *, execution: bool = False) -> None:
        self._queries[session_id] += 1
        if execution:
            self._executions[access_key] += 1

    async def flush(self) -> None:
        queries, self._queries = self._queries, collections.Counter()
        executions, self._executions = self._executions, collections.Counter()
        # Each write is one statement, all or nothing: a failed one is kept whole.
        if queries:
            try:
                await kernels.record_queries(self.db, list(queries.items()))
            except Exception:
                log.exception("could not record session activity; kept for the next flush")
                self._queries.update(queries)
        if executions:
            try:
                await record_executions(self.db, executions)
            except Exception:
                log.exception("could not record executions; kept for the next flush")
                self._executions.update(executions)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush the counts periodically; flush once more when cancelled."""
        await flush_every(self.flush, self.interval, task_status=task_status)
