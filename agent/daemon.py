"""Running an agent: the Docker driver, the kernels, and links to every manager."""

from __future__ import annotations

import logging

import trio

from crucible.agent.agent import Agent
from crucible.agent.docker_driver import DockerDriver, DockerError
from crucible.agent.manager_link import ManagerLink
from crucible.config import Config
from crucible.errors import StartupError

log = logging.getLogger(__name__)


async def run_agent(
    config: Config,
    manager_urls: list[str],
    secret: str,
    *,
    task_status: trio.TaskStatus[Agent] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Supervise kernels and stay linked to `manager_urls` until cancelled.

    Cancellation stops supervision but leaves kernel containers running: a restarted
    agent recovers them from their labels.
    """
    try:
        driver = await DockerDriver.connect(config.agent)
    except DockerError as exc:
        raise StartupError(
            f"{exc}; start dockerd (scripts/bootstrap does), "
            "or run `crucible manager` for a manager without a local agent"
        ) from exc
    try:
        async with trio.open_nursery() as nursery:
            agent = Agent(config, driver)
            await nursery.start(agent.run)
            for url in manager_urls:
                await nursery.start(ManagerLink(agent, url, secret).run)
            log.info("agent %s started with %d kernel(s)", agent.id, len(agent.kernels))
            task_status.started(agent)
    finally:
        with trio.CancelScope(shield=True):
            await driver.aclose()
