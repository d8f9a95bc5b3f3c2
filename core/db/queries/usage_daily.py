"""SQL for the ``usage_daily`` table: usage statistics per access key and day."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import date

import attrs

from crucible.db.pool import Executor
from crucible.db.queries.columns import Row


class Period(enum.StrEnum):
    DAY = "day"
    WEEK = "week"  # ISO weeks, starting on Monday
    MONTH = "month"
    YEAR = "year"
    TOTAL = "total"  # the whole requested range as one row


@attrs.frozen
class UsageDelta:
    """What to add to one access key's figures of today: counters add up, the peak and
    the storage high-water mark keep the larger value."""

    access_key: str
    sessions_started: int = 0
    executions: int = 0
    cpu_time_ms: int = 0
    mem_peak_bytes: int = 0
    #: Memory samples (bytes) and how many they are, for the daily average.
    mem_sample_sum: int = 0
    mem_samples: int = 0
    storage_bytes: int = 0
    #: Milliseconds of one whole GPU (half a GPU for 2 s: 1000).
    gpu_time_ms: int = 0


_DELTA_FIELDS = tuple(field.name for field in attrs.fields(UsageDelta))[1:]


@attrs.frozen
class UsageRecord(Row):
    access_key: str
    period_start: date
    period_end: date
    sessions_started: int
    executions: int
    cpu_time_ms: int
    mem_peak_bytes: int
    mem_avg_bytes: int
    storage_bytes: int
    gpu_time_ms: int = 0


async def add(ex: Executor, deltas: Sequence[UsageDelta]) -> None:
    """Add every delta to today's row of its access key, in one statement (the only one
    that writes usage). Deltas of one key are merged first: an upsert may touch a row
    once per statement."""
    if not deltas:
        return
    await ex.execute(
        """INSERT INTO usage_daily AS u (access_key, day, sessions_started, executions,
                                         cpu_time_ms, mem_peak_bytes, mem_sample_sum,
                                         mem_samples, storage_bytes, gpu_time_ms)
           SELECT d.access_key, current_date, sum(d.sessions_started), sum(d.executions),
                  sum(d.cpu_time_ms), max(d.mem_peak_bytes), sum(d.mem_sample_sum),
                  sum(d.mem_samples), max(d.storage_bytes), sum(d.gpu_time_ms)
           FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                       $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[])
                AS d(access_key, sessions_started, executions, cpu_time_ms, mem_peak_bytes,
                     mem_sample_sum, mem_samples, storage_bytes, gpu_time_ms)
           GROUP BY d.access_key
           ON CONFLICT (access_key, day) DO UPDATE SET
               sessions_started = u.sessions_started + EXCLUDED.sessions_started,
               executions = u.executions + EXCLUDED.executions,
               cpu_time_ms = u.cpu_time_ms + EXCLUDED.cpu_time_ms,
               mem_peak_bytes = greatest(u.mem_peak_bytes, EXCLUDED.mem_peak_bytes),
               mem_sample_sum = u.mem_sample_sum + EXCLUDED.mem_sample_sum,
               mem_samples = u.mem_samples + EXCLUDED.mem_samples,
               storage_bytes = greatest(u.storage_bytes, EXCLUDED.storage_bytes),
               gpu_time_ms = u.gpu_time_ms + EXCLUDED.gpu_time_ms""",
        [delta.access_key for delta in deltas],
        *([getattr(delta, name) for delta in deltas] for name in _DELTA_FIELDS),
    )


def _report_sql(period: Period) -> str:
    """Parameters ``$1`` access keys (NULL: all), ``$2`` first day, ``$3`` last day (both
    inclusive)."""
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
               max(storage_bytes) AS storage_bytes,
               sum(gpu_time_ms)::bigint AS gpu_time_ms
        FROM usage_daily
        WHERE ($1::text[] IS NULL OR access_key = ANY($1::text[]))
          AND day BETWEEN $2::date AND $3::date
        GROUP BY 1, 2, 3
        ORDER BY 2, 1"""


async def report(
    ex: Executor, period: Period, access_keys: Sequence[str] | None, first: date, last: date
) -> list[UsageRecord]:
    """The figures of `access_keys` (None: everyone's) from `first` to `last` inclusive,
    one row per key and `period`."""
    rows = await ex.fetch(
        _report_sql(period), None if access_keys is None else list(access_keys), first, last
    )
    return UsageRecord.from_rows(rows)


async def delete_of_keypair(ex: Executor, access_key: str) -> None:
    await ex.execute("DELETE FROM usage_daily WHERE access_key = $1", access_key)
