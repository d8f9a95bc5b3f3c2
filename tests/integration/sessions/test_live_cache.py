"""Sessions held in memory for executes (`crucible.sessions.live`) against two managers
on one database and one real agent linked to both: whatever one manager ends, the
other never runs code on, however long it holds the session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from crucible.db.pool import Database, Executor
from crucible.db.queries import kernels
from testlib.agents import running_agents
from testlib.server import Harness, make_config, open_harness, running_manager
from testlib.sessions import create, execute, new_token, removing_containers, stream_text
from testlib.signing import SigningClient

#: Manager A holds a session for an hour: only its agent can tell it the session ended.
HOLD_FOR_AN_HOUR = {"sessions": {"live_cache_ttl": 3600.0, "exec_flush_interval": 1.0}}


@attrs.frozen
class TwoManagers:
    a: Harness
    b: SigningClient  # the same user, through manager B


@pytest.fixture
async def two_managers(
    docker_ready: None, pg_dsn: str, short_state_dir: Path, db: Database
) -> AsyncIterator[TwoManagers]:
    agent_id = f"test-{short_state_dir.name}"
    config = make_config(
        pg_dsn,
        short_state_dir,
        {**HOLD_FOR_AN_HOUR, "agent": {"heartbeat_interval": 1.0, "id": agent_id}},
    )
    async with removing_containers(agent_id), open_harness(config, db) as a:
        async with running_manager(config, db) as (server_b, endpoint_b):
            b = SigningClient(endpoint_b.url, a.user)
            try:
                async with running_agents(
                    a, [config], more_managers=[(server_b, endpoint_b.url)], timeout=30
                ):
                    yield TwoManagers(a, b)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(60):
                    await b.aclose()


async def _held_by_a_ended_by_b(two_managers: TwoManagers) -> str:
    """A session created and run through A (which holds it then), destroyed through B."""
    a, b = two_managers.a, two_managers.b
    token = new_token()
    assert (await create(a.client, token)).status_code == 201
    await execute(a.client, token, "x = 41")
    assert len(a.server.components.sessions.live) == 1
    assert (await b.request("DELETE", f"/kernel/{token}")).status_code == 200
    return token


async def test_a_session_ended_through_another_manager_is_not_run(
    two_managers: TwoManagers,
) -> None:
    a = two_managers.a
    token = await _held_by_a_ended_by_b(two_managers)
    held = a.server.components.sessions.live
    assert len(held) == 1  # A still holds it: nobody told it
    gone = await a.client.post(f"/kernel/{token}", json={"mode": "query", "code": "print(x)"})
    assert gone.status_code == 404, gone.text
    assert gone.json()["type"].endswith("/kernel-not-found")
    assert len(held) == 0


async def test_a_token_used_again_through_another_manager_runs_in_the_new_session(
    two_managers: TwoManagers,
) -> None:
    a, b = two_managers.a, two_managers.b
    token = await _held_by_a_ended_by_b(two_managers)
    assert (await create(b, token)).json()["created"] is True
    # A still holds the first session: its agent refuses it, A reads the row again.
    results = await execute(a.client, token, "print('x' in globals())")
    assert stream_text(results) == "False\n"


async def test_executes_on_a_held_session_read_no_row(
    two_managers: TwoManagers, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = two_managers.a
    token = new_token()
    assert (await create(a.client, token)).status_code == 201
    await execute(a.client, token, "pass")
    lookups = 0
    read = kernels.live_session

    async def counted(ex: Executor, access_key: str, token: str) -> kernels.Kernel | None:
        nonlocal lookups
        lookups += 1
        return await read(ex, access_key, token)

    monkeypatch.setattr(kernels, "live_session", counted)
    for _ in range(5):
        await execute(a.client, token, "pass")
    assert lookups == 0
    assert (await a.client.request("DELETE", f"/kernel/{token}")).status_code == 200
    assert (lookups, len(a.server.components.sessions.live)) == (1, 0)
    # Ended here, it is forgotten at once: the next execute reads the row, finds none.
    gone = await a.client.post(f"/kernel/{token}", json={"mode": "query", "code": "pass"})
    assert gone.status_code == 404
    assert lookups == 2
