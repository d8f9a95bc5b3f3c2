"""Two real agents (each its own id, state directory and link, in this process) against
one manager: the agent selector spreads or packs sessions across them, and a session
waiting for room is placed on the agent that frees it. Traffic stays on 127.0.0.1."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from crucible.agent.service import Agent
from crucible.db.pool import Database
from testlib.agents import running_agents
from testlib.server import Harness, make_config, open_harness
from testlib.sessions import create, new_token, removing_containers

from .conftest import CLUSTER_SETTINGS

TIMEOUT = 90


@attrs.frozen
class TwoAgents:
    harness: Harness
    agents: list[Agent]


@pytest.fixture(params=["dispersed", "concentrated"])
async def two_agents(
    docker_ready: None, request: pytest.FixtureRequest, pg_dsn: str, db: Database
) -> AsyncIterator[TwoAgents]:
    dirs = [Path(tempfile.mkdtemp(prefix="crs-", dir="/tmp")) for _ in range(2)]
    configs = [
        make_config(
            pg_dsn,
            state,
            {
                **CLUSTER_SETTINGS,
                "scheduler": {"agent_selector": request.param},
                # Two cores each: two one-core sessions per agent, four in all.
                "agent": {
                    **CLUSTER_SETTINGS["agent"],
                    "id": f"test-{state.name}",
                    "cpu_cores": 2,
                    "cpu_overcommit": 1.0,
                },
            },
        )
        for state in dirs
    ]
    try:
        async with AsyncExitStack() as stack:
            for config in configs:
                await stack.enter_async_context(removing_containers(config.agent.id))
            harness = await stack.enter_async_context(open_harness(configs[0], db))
            agents = await stack.enter_async_context(running_agents(harness, configs))
            yield TwoAgents(harness, agents)
    finally:
        for state in dirs:
            shutil.rmtree(state, ignore_errors=True)


async def agent_of(db: Database, token: str) -> str:
    found = await db.fetchval(
        "SELECT agent_id FROM kernels WHERE sess_id = $1 AND status <> 'TERMINATED'", token
    )
    assert isinstance(found, str), found
    return found


async def test_placement_across_agents_and_pending_to_placed(two_agents: TwoAgents) -> None:
    harness = two_agents.harness
    client, db = harness.client, harness.db
    selector = harness.config.scheduler.agent_selector
    tokens = [new_token() for _ in range(5)]
    with trio.fail_after(TIMEOUT):
        for token in tokens[:2]:
            assert (await create(client, token, instanceCores="1")).status_code == 201
        first, second = [await agent_of(db, t) for t in tokens[:2]]
        if selector == "dispersed":
            assert first != second  # spread: one session per agent
        else:
            assert first == second  # packed: the second fills the first's agent
        for token in tokens[2:4]:
            assert (await create(client, token, instanceCores="1")).status_code == 201
        held = [await agent_of(db, t) for t in tokens[:4]]
        assert sorted(held) == sorted([a.id for a in two_agents.agents] * 2)
        # Both agents are full: the fifth waits until a session ends, then runs where
        # the room freed.
        answers: list[httpx.Response] = []
        async with trio.open_nursery() as nursery:

            async def create_fifth() -> None:
                answers.append(await create(client, tokens[4], instanceCores="1"))

            nursery.start_soon(create_fifth)
            while (await _status(db, tokens[4])) != "PENDING":
                await trio.sleep(0.05)
            freed = held[1]
            assert (await client.request("DELETE", f"/kernel/{tokens[1]}")).status_code == 200
        assert answers[0].status_code == 201, answers[0].text
        assert await agent_of(db, tokens[4]) == freed


async def _status(db: Database, token: str) -> Any:
    return await db.fetchval(
        "SELECT status FROM kernels WHERE sess_id = $1 ORDER BY created_at DESC LIMIT 1", token
    )
