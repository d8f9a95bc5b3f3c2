"""Keeping a service of a process running: restart it, with a backoff, when it fails.

`crucible up` runs a manager and an agent in one process; neither may take the other
down. Each runs under `supervise`: a failure after the service has started is logged
and the service started again, while the rest of the process carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from crucible.config import SupervisionConfig
from crucible.exc_groups import describe

log = logging.getLogger(__name__)

#: The ``[supervision]`` defaults, for callers without a configuration (tests).
_DEFAULTS = SupervisionConfig()

Service = Callable[..., Awaitable[Any]]


async def supervise(
    name: str,
    service: Service,
    *args: Any,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    delays: Sequence[float] = _DEFAULTS.restart_delays,
    stable_after: float = _DEFAULTS.stable_after,
) -> None:
    """Run ``service(*args, task_status=...)`` and restart it whenever it raises.

    A failure before the first start propagates: the operator has something to fix
    (no Docker engine, the port is taken). `task_status` gets the first start's value.
    A service that returns was asked to stop: supervision ends with it. `delays` and
    `stable_after` are ``[supervision]``'s `restart_delays` and `stable_after`.
    """
    started = False
    attempt = 0
    while True:
        up_since: float | None = None
        try:
            async with trio.open_nursery() as nursery:
                value = await nursery.start(service, *args)
                up_since = trio.current_time()
                if not started:
                    started = True
                    task_status.started(value)
            return
        except* Exception as group:
            if not started:
                raise
            if up_since is not None and trio.current_time() - up_since > stable_after:
                attempt = 0
            delay = delays[min(attempt, len(delays) - 1)]
            log.error(
                "%s failed (%s); restarting it in %.1f s", name, describe(group), delay,
                exc_info=group,
            )
        await trio.sleep(delay)
        attempt += 1
