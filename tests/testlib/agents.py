"""Real agents in a test's nursery, linked to the test's managers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from crucible.agent.daemon import run_agent
from crucible.agent.service import Agent
from crucible.config import Config
from crucible.db.pool import Database
from crucible.manager.server import ManagerServer
from testlib.server import CLUSTER_SECRET, Harness


def _ws(url: str) -> str:
    return url.replace("http://", "ws://")


@asynccontextmanager
async def agents_nursery(harness: Harness) -> AsyncIterator[trio.Nursery]:
    """A nursery to run agents in: when the block ends, the sessions on the harness's
    manager are destroyed, then the agents stop."""
    async with trio.open_nursery() as nursery:
        try:
            yield nursery
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(60):
                await harness.server.components.sessions.destroy_all()
            nursery.cancel_scope.cancel()


async def heartbeats_recorded(db: Database, agent_ids: Sequence[str]) -> None:
    """Wait until each of `agent_ids` has its first heartbeat (with the image list) in
    the database (the caller bounds the wait)."""
    query = "SELECT count(*) FROM agents WHERE id = ANY($1::text[])"
    while await db.fetchval(query, list(agent_ids)) < len(agent_ids):
        await trio.sleep(0.05)


@asynccontextmanager
async def running_agents(
    harness: Harness,
    configs: Sequence[Config],
    *,
    more_managers: Sequence[tuple[ManagerServer, str]] = (),
    timeout: float = 60,
) -> AsyncIterator[list[Agent]]:
    """An agent for each of `configs`, linked to the harness's manager and to each of
    `more_managers` (a server and its URL), its first heartbeat in the database; at the
    end the sessions are destroyed, then the agents stop."""
    servers = [harness.server, *(server for server, _ in more_managers)]
    urls = [_ws(harness.url), *(_ws(url) for _, url in more_managers)]
    async with agents_nursery(harness) as nursery:
        agents: list[Agent] = []
        with trio.fail_after(timeout):
            for config in configs:
                agent: Agent = await nursery.start(run_agent, config, urls, CLUSTER_SECRET)
                agents.append(agent)
                for server in servers:
                    await server.components.agents.wait_linked(agent.id)
            await heartbeats_recorded(harness.db, [agent.id for agent in agents])
        yield agents
