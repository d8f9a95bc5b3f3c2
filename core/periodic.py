"""Background duties that come round again: scans, sweeps and flushes of the manager.

Each runs in a task of the manager's background nursery (`ManagerServer.run` starts it
with ``nursery.start``) until that nursery is cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

#: Seconds the last flush of counters may take when a duty is cancelled (the manager
#: stops): what was counted since the flush before is written, unless the database hangs.
FINAL_FLUSH_TIMEOUT = 5.0


async def repeat(
    duty: Callable[[], Awaitable[object]],
    interval: float,
    *,
    log: logging.Logger,
    failure: str,
    at_start: bool = False,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Await `duty` every `interval` seconds (the first time at once with `at_start`,
    else after one interval). A failure is logged to `log` as `failure`, and the next
    round comes all the same: one bad scan must not end the duty."""
    task_status.started()
    if not at_start:
        await trio.sleep(interval)
    while True:
        try:
            await duty()
        except Exception:
            log.exception(failure)
        await trio.sleep(interval)


async def flush_every(
    flush: Callable[[], Awaitable[None]],
    interval: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Await `flush` (which logs its own failures) every `interval` seconds, and once
    more when cancelled, so counters gathered in memory survive a stop."""
    task_status.started()
    try:
        while True:
            await trio.sleep(interval)
            await flush()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(FINAL_FLUSH_TIMEOUT):
            await flush()
