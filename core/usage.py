"""Usage statistics per access key: recorded into ``usage_daily``, reported per period.

The session registry counts what it sees as it sees it: sessions started (placement),
executions (the activity recorder), CPU time and peak memory (when a session ends) and
one memory sample per live kernel per agent heartbeat (`record_memory_samples`), from
which the average follows. ``storage_bytes`` is a daily high-water mark that the vfolder
layer reports through `record_storage`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import date
from typing import Any

import attrs

from crucible.db.pool import Database


class Period(enum.StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO weeks, starting on Monday
    MONTH = "month"
    YEAR = "year"
    TOTAL = "total"  # the whole requested range as one row


#: The longest date range one usage query may cover, days.
MAX_RANGE_DAYS = 3660


@attrs.frozen
class UsageRecord:
    access_key: str
    period_start: date
    period_end: date
    sessions_started: int
    executions: int
    cpu_time_ms: int
    mem_peak_bytes: int
    mem_avg_bytes: int
    storage_bytes: int


async def record_memory_samples(db: Database, samples: Sequence[tuple[str, int]]) -> None:
    """Add one memory sample per ``(kernel id, bytes)`` to its owner's day, in one statement."""
    if not samples:
        return
    await db.execute(
        """INSERT INTO usage_daily (access_key, day, mem_sample_sum, mem_samples, mem_peak_bytes)
           SELECT k.access_key, current_date, sum(s.mem), count(*), max(s.mem)
           FROM unnest($1::uuid[], $2::bigint[]) AS s(id, mem) JOIN kernels k ON k.id = s.id
           GROUP BY k.access_key
           ON CONFLICT (access_key, day) DO UPDATE SET
               mem_sample_sum = usage_daily.mem_sample_sum + EXCLUDED.mem_sample_sum,
               mem_samples = usage_daily.mem_samples + EXCLUDED.mem_samples,
               mem_peak_bytes = greatest(usage_daily.mem_peak_bytes, EXCLUDED.mem_peak_bytes)""",
        [kernel_id for kernel_id, _ in samples],
        [max(0, int(mem)) for _, mem in samples],
    )


async def record_storage(db: Database, access_key: str, total_bytes: int) -> None:
    """Note that `access_key`'s folders hold `total_bytes` now (today's high-water mark)."""
    await db.execute(
        """INSERT INTO usage_daily (access_key, day, storage_bytes)
           VALUES ($1, current_date, $2) ON CONFLICT (access_key, day)
           DO UPDATE SET storage_bytes = greatest(usage_daily.storage_bytes,
                                                  EXCLUDED.storage_bytes)""",
        access_key,
        max(0, int(total_bytes)),
    )


def usage_sql(period: Period) -> str:
    """One statement answering a usage query; parameters ``$1`` access keys (NULL: all),
    ``$2`` first day, ``$3`` last day (both inclusive)."""
    if period is Period.TOTAL:
        start, end = "$2::date", "$3::date"
    else:
        trunc = f"date_trunc('{period.value}', day)::date"
        start = trunc
        end = f"({trunc} + interval '1 {period.value}' - interval '1 day')::date"
    return f"""
        SELECT access_key, {start} AS period_start, {end} AS period_end,
               sum(sessions_started)::bigint AS sessions_started,
               sum(executions)::bigint AS executions,
               sum(cpu_time_ms)::bigint AS cpu_time_ms,
               max(mem_peak_bytes) AS mem_peak_bytes,
               coalesce(round(sum(mem_sample_sum) / nullif(sum(mem_samples), 0)), 0)::bigint
                   AS mem_avg_bytes,
               max(storage_bytes) AS storage_bytes
        FROM usage_daily
        WHERE ($1::text[] IS NULL OR access_key = ANY($1::text[]))
          AND day BETWEEN $2::date AND $3::date
        GROUP BY 1, 2, 3
        ORDER BY 2, 1"""


def record_from_row(row: Any) -> UsageRecord:
    return UsageRecord(**{field.name: row[field.name] for field in attrs.fields(UsageRecord)})
