"""The batched per-request counters (`crucible.sessions.activity`, the keypairs' usage in
`crucible.keypairs.KeypairCache`) against the real schema: written when the manager
stops, and kept, not dropped, when a write fails."""

from __future__ import annotations

from typing import Any

import trio

from crucible.db.pool import Database
from crucible.db.queries import kernels, pending
from crucible.keypairs import KeypairCache, KeypairRepository, NewKeypair
from crucible.sessions.activity import ActivityRecorder

TIMEOUT = 20


async def _session(db: Database, keypairs: KeypairRepository) -> kernels.Kernel:
    owner = (await keypairs.create(NewKeypair("activity@test"))).access_key
    await db.execute("INSERT INTO agents (id, addr) VALUES ('agent-a', 'tcp://127.0.0.1:1')")
    queued = await pending.insert_pending(
        db, token="tok", access_key=owner, image="python", lang="python",
        tag=None, environ={}, slots={"cpu": 1.0},
    )  # fmt: skip
    assert await pending.assign(db, [(queued.id, "agent-a")]) == [queued.id]
    return queued


async def _counts(db: Database, session: kernels.Kernel) -> tuple[int, int]:
    queries = await db.fetchval("SELECT num_queries FROM kernels WHERE id = $1", session.id)
    executions = await db.fetchval(
        "SELECT coalesce(sum(executions), 0) FROM usage_daily WHERE access_key = $1",
        session.access_key,
    )
    return queries, executions


async def test_counts_are_written_when_the_manager_stops(
    db: Database, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        session = await _session(db, keypairs)
        recorder = ActivityRecorder(db, interval=3600)  # no periodic flush in this test
        async with trio.open_nursery() as nursery:
            await nursery.start(recorder.run)
            for _ in range(3):
                recorder.touch(session.id, session.access_key, execution=True)
            recorder.touch(session.id, session.access_key)  # an interrupt, say
            assert await _counts(db, session) == (0, 0)
            nursery.cancel_scope.cancel()
        assert await _counts(db, session) == (4, 3)


class _FailingOnce:
    """The database, but the first write of each kind fails (a restart, a timeout)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.failed: set[str] = set()

    async def executemany(self, query: str, args: Any) -> None:
        self._fail("executemany")
        await self._db.executemany(query, args)

    async def execute(self, query: str, *args: Any) -> str:
        self._fail("execute")
        return await self._db.execute(query, *args)

    def _fail(self, kind: str) -> None:
        if kind not in self.failed:
            self.failed.add(kind)
            raise OSError("connection lost")


async def test_a_failed_write_keeps_its_counts_for_the_next_flush(
    db: Database, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        session = await _session(db, keypairs)
        recorder = ActivityRecorder(_FailingOnce(db), interval=3600)  # type: ignore[arg-type]
        for _ in range(2):
            recorder.touch(session.id, session.access_key, execution=True)
        await recorder.flush()  # both writes fail
        assert await _counts(db, session) == (0, 0)
        recorder.touch(session.id, session.access_key, execution=True)
        await recorder.flush()
        await recorder.flush()  # nothing left: nothing written twice
        assert await _counts(db, session) == (3, 3)


async def test_keypair_usage_survives_a_failed_write(
    db: Database, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        key = (await keypairs.create(NewKeypair("usage@test"))).access_key
        failing = KeypairRepository(_FailingOnce(db))  # type: ignore[arg-type]
        cache = KeypairCache(failing, ttl=60, flush_interval=3600)
        for _ in range(2):
            cache.record_use(key)
        await cache.flush()  # fails
        cache.record_use(key)
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            nursery.cancel_scope.cancel()  # the stop's flush writes what is kept
        row = await db.fetchrow(
            "SELECT num_queries, last_used FROM keypairs WHERE access_key = $1", key
        )
        assert row["num_queries"] == 3 and row["last_used"] is not None
