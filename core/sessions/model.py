"""A session as the lifecycle sees it: its master kernel's row of ``kernels``.

The row type, the stats object and the statuses belong to the table and are defined with
its SQL (`crucible.db.queries.kernels`); the lifecycle reads the same rows under the name
it speaks.
"""

from __future__ import annotations

from crucible.db.queries.kernels import LIVE_STATUSES, STATS_KEYS, Kernel, normalize_stats

__all__ = ["LIVE_STATUSES", "STATS_KEYS", "Session", "normalize_stats"]

#: A master kernel's row.
Session = Kernel
