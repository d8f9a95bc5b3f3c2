"""A session as the lifecycle sees it: its master kernel's row of ``kernels``.

The row type and the statuses belong to the table and are defined with its SQL
(`crucible.db.queries.kernels`), the stats object with the protocol
(`crucible.protocol.stats`); the lifecycle reads the same rows under the name it speaks.
"""

from __future__ import annotations

from crucible.db.queries.kernels import LIVE_STATUSES, Kernel

__all__ = ["LIVE_STATUSES", "Session"]

#: A master kernel's row.
Session = Kernel
