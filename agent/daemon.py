"""Running an agent: the Docker driver, the kernels, and links to every manager.

`open_agent` is the one place that puts an agent together: it connects the Docker
driver (and closes it after the block), and builds the agent and one link per manager
on it, each handed what it uses. `run_agent` runs them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from crucible.agent.accelerators import open_accelerators
from crucible.agent.docker.driver import DockerDriver
from crucible.agent.docker.errors import DockerError
from crucible.agent.manager_link import ManagerLink
from crucible.agent.service import Agent
from crucible.config import Config
from crucible.errors import StartupError

log = logging.getLogger(__name__)


@attrs.frozen
class AgentComponents:
    """One agent's parts: the engine it drives, the kernels' keeper, its manager links."""

    driver: DockerDriver
    agent: Agent
    links: tuple[ManagerLink, ...]


@asynccontextmanager
async def open_agent(
    config: Config, manager_urls: Sequence[str], secret: str
) -> AsyncIterator[AgentComponents]:
    """The agent's components for the block; the Docker driver is closed after it.

    No Docker engine is a `StartupError` (the operator has something to fix); an
    accelerator plugin that is not installed or refuses its table is a `ConfigError`.
    """
    accelerators = open_accelerators(config)
    try:
        driver = await DockerDriver.connect(config.agent)
    except DockerError as exc:
        raise StartupError(
            f"{exc}; start dockerd (scripts/bootstrap does), "
            "or run `crucible manager` for a manager without a local agent"
        ) from exc
    try:
        agent = Agent(config, driver, accelerators)
        links = tuple(ManagerLink(agent, url, secret) for url in manager_urls)
        yield AgentComponents(driver, agent, links)
    finally:
        with trio.CancelScope(shield=True):
            await driver.aclose()


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
    async with open_agent(config, manager_urls, secret) as parts:
        async with trio.open_nursery() as nursery:
            await nursery.start(parts.agent.run)
            for link in parts.links:
                await nursery.start(link.run)
            log.info("agent %s started with %d kernel(s)", parts.agent.id, len(parts.agent.kernels))
            task_status.started(parts.agent)
