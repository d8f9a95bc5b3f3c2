"""The query modules against the real schema: the one usage upsert, typed kernel rows."""

from __future__ import annotations

import attrs
import trio

from crucible.db.pool import Database
from crucible.db.queries import kernels, pending, usage_daily
from crucible.db.queries.usage_daily import UsageDelta
from crucible.keypairs import KeypairRepository, NewKeypair
from crucible.protocol.stats import KernelStats
from crucible.usage import record_memory_samples, record_session_end

TIMEOUT = 20


async def _today(db: Database, access_key: str) -> dict[str, int]:
    row = await db.fetchrow(
        """SELECT sessions_started, executions, cpu_time_ms, mem_peak_bytes,
                  mem_sample_sum::bigint AS mem_sample_sum, mem_samples, storage_bytes
           FROM usage_daily WHERE access_key = $1 AND day = current_date""",
        access_key,
    )
    return dict(row)


async def test_one_upsert_adds_counters_and_keeps_peaks(
    db: Database, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        one = (await keypairs.create(NewKeypair("one@test"))).access_key
        two = (await keypairs.create(NewKeypair("two@test"))).access_key
        # Two deltas of one key in one statement: merged, not a "cannot affect row a
        # second time" error.
        await usage_daily.add(
            db,
            [
                UsageDelta(one, sessions_started=1, storage_bytes=50),
                UsageDelta(two, executions=3),
                UsageDelta(one, executions=2, storage_bytes=70),
            ],
        )
        await record_memory_samples(db, [(one, 100), (one, 300), (two, -5)])
        await record_session_end(db, one, KernelStats(cpu_used=40, mem_max_bytes=200))
        await usage_daily.add(db, [UsageDelta(one, sessions_started=1, storage_bytes=60)])
        await usage_daily.add(db, [])
        assert await _today(db, one) == {
            "sessions_started": 2,
            "executions": 2,
            "cpu_time_ms": 40,
            "mem_peak_bytes": 300,  # the largest sample beats the smaller session peak
            "mem_sample_sum": 400,
            "mem_samples": 2,
            "storage_bytes": 70,  # a high-water mark: 60 later does not lower it
        }
        # A negative sample counts as 0 bytes.
        assert await _today(db, two) == {
            "sessions_started": 0,
            "executions": 3,
            "cpu_time_ms": 0,
            "mem_peak_bytes": 0,
            "mem_sample_sum": 0,
            "mem_samples": 1,
            "storage_bytes": 0,
        }


async def test_kernel_rows_carry_typed_values(db: Database, keypairs: KeypairRepository) -> None:
    with trio.fail_after(TIMEOUT):
        owner = (await keypairs.create(NewKeypair("rows@test"))).access_key
        await db.execute("INSERT INTO agents (id, addr) VALUES ('agent-q', 'tcp://127.0.0.1:1')")
        queued = await pending.insert_pending(
            db,
            token="tok",
            access_key=owner,
            image="crucible/kernel-python:3.11",
            lang="python",
            tag=None,
            environ={"A": "1"},
            slots={"cpu": 1.0, "mem": 1024.0},
        )
        assert (queued.status, queued.agent_id) == ("PENDING", None)
        assert await pending.assign(db, [(queued.id, "agent-q")]) == [queued.id]
        assert await pending.assign(db, [(queued.id, "agent-q")]) == []  # placed once only
        made = await pending.by_id(db, queued.id)
        assert made is not None and made.agent_id == "agent-q"
        assert await pending.occupied_by_agent(db) == {"agent-q": {"cpu": 1.0, "mem": 1024.0}}
        # Any slot name counts; what is not a number (a plugin's note) is no room taken.
        await db.execute(
            """UPDATE kernels SET occupied_slots = occupied_slots
                   || '{"cuda.shares": 0.5, "cuda.ids": ["0"]}'::jsonb WHERE id = $1::uuid""",
            queued.id,
        )
        assert (await pending.occupied_by_key(db))[owner] == {
            "cpu": 1.0,
            "mem": 1024.0,
            "cuda.shares": 0.5,
        }
        await db.execute(
            "UPDATE kernels SET occupied_slots = $2::jsonb WHERE id = $1::uuid",
            queued.id,
            '{"cpu": 1.0, "mem": 1024.0}',
        )
        assert (made.status, made.role, made.environ, made.last_stat) == (
            "PREPARING",
            "master",
            {"A": "1"},
            None,
        )
        await kernels.set_stats(db, [(made.id, KernelStats(cpu_used=5))])
        ended = await kernels.mark_terminated(db, made.id, "done", None)
        assert ended is not None and ended.status == "TERMINATED"
        # Stored stats come back with every key, as numbers (the CLI divides by them).
        assert ended.last_stat is not None and ended.last_stat.cpu_used == 5
        assert set(ended.last_stat.as_dict()) == set(attrs.fields_dict(KernelStats))
        assert await kernels.mark_terminated(db, made.id, "again", None) is None
        assert await kernels.live_session(db, owner, "tok") is None
