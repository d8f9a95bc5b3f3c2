"""The ``[pool]`` table: the agent's warm pool of pre-started kernels (docs/internals.md,
"The warm pool")."""

from __future__ import annotations

import attrs

from crucible.config.types import GiB, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt


@attrs.frozen
class PoolConfig:
    #: Pre-started kernels to keep ready, per image: a ``lang`` name or alias
    #: (``python``: the newest image of that language) or an image reference
    #: (``crucible/kernel-python:3.11``). Empty: no pool (``crucible up`` keeps two
    #: Python kernels unless this table is set).
    sizes: dict[str, NonNegativeInt] = attrs.Factory(dict)
    #: The most memory the pool may hold, counting each pooled kernel at its memory
    #: limit (``sessions.default_memory_bytes``, what a session gets by default).
    max_memory_bytes: PositiveInt = PositiveInt(2 * GiB)
    #: Host memory (MemAvailable) the pool leaves alone: below it pooled kernels are
    #: removed, and a kernel is only added while its limit still fits above it.
    min_host_available_bytes: NonNegativeInt = NonNegativeInt(1 * GiB)
    #: Pooled kernels started at once when the pool refills.
    refill_concurrency: PositiveInt = PositiveInt(1)
    #: Seconds the agent waits at start for the pool to fill before it registers with
    #: its managers, so that the first sessions find it warm; 0: no wait.
    start_timeout: NonNegativeFloat = NonNegativeFloat(30.0)
    #: Seconds between looks at the pool (what is missing, the host's memory).
    check_interval: PositiveFloat = PositiveFloat(2.0)
    #: Seconds to wait after a pooled kernel failed to start before trying again.
    retry_delay: PositiveFloat = PositiveFloat(10.0)


#: What ``crucible up`` starts with when the file says nothing of ``[pool] sizes``.
UP_POOL_SIZES = {"python": 2}
