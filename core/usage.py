"""Usage statistics per access key: what counts, recorded into ``usage_daily`` through its
one upsert (`crucible.db.queries.usage_daily.add`), reported per period.

The session side counts what it sees as it sees it: sessions started (placement),
executions (the activity recorder), CPU time and peak memory (when a session ends) and
one memory sample per live kernel per agent heartbeat (`record_memory_samples`), from
which the average follows. ``storage_bytes`` is a daily high-water mark that the vfolder
layer reports through `record_storage`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from crucible.db.pool import Executor
from crucible.db.queries import usage_daily
from crucible.db.queries.usage_daily import Period, UsageDelta, UsageRecord
from crucible.protocol.stats import KernelStats

__all__ = [
    "MAX_RANGE_DAYS",
    "Period",
    "UsageRecord",
    "record_executions",
    "record_memory_samples",
    "record_session_end",
    "record_session_starts",
    "record_storage",
]

#: The longest date range one usage query may cover, days.
MAX_RANGE_DAYS = 3660


async def record_session_starts(ex: Executor, access_keys: Iterable[str]) -> None:
    """Count a session started for each of `access_keys` (a key twice: two sessions)."""
    await usage_daily.add(ex, [UsageDelta(key, sessions_started=1) for key in access_keys])


async def record_session_end(ex: Executor, access_key: str, stats: KernelStats) -> None:
    """Add an ended session's CPU time and peak memory (its last stats)."""
    await usage_daily.add(
        ex,
        [UsageDelta(access_key, cpu_time_ms=stats.cpu_used, mem_peak_bytes=stats.mem_max_bytes)],
    )


async def record_executions(ex: Executor, counts: Mapping[str, int]) -> None:
    """Add ``{access key: executions}``."""
    await usage_daily.add(ex, [UsageDelta(key, executions=n) for key, n in counts.items()])


async def record_memory_samples(ex: Executor, samples: Sequence[tuple[str, int]]) -> None:
    """Add one memory sample per ``(access key, bytes)`` (one per live kernel)."""
    await usage_daily.add(
        ex,
        [
            UsageDelta(key, mem_sample_sum=mem, mem_samples=1, mem_peak_bytes=mem)
            for key, mem in ((key, max(0, int(mem))) for key, mem in samples)
        ],
    )


async def record_storage(ex: Executor, access_key: str, total_bytes: int) -> None:
    """Note that `access_key`'s folders hold `total_bytes` now (today's high-water mark)."""
    await usage_daily.add(ex, [UsageDelta(access_key, storage_bytes=max(0, int(total_bytes)))])
