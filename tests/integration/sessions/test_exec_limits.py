"""The agent's execution limits through the API (docs/security.md, "Execution limits"):
the per-session queue bound, the per-kernel start rate, and agent-wide slots shared
fairly between access keys, so that one tenant's flood cannot starve another's."""

from __future__ import annotations

import json

import pytest
import trio

from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.problems import assert_problem
from testlib.sessions import (
    Cluster,
    execute,
    release_blocker,
    start_blocker,
    start_session,
    stream_text,
)
from testlib.signing import Credentials
from testlib.streams import open_stream


async def _queued(cluster: Cluster, count: int) -> None:
    """Wait until the agent holds `count` queued runs (over all kernels)."""
    with trio.fail_after(10):
        while sum(k.queued_runs for k in cluster.agent.kernels.values()) < count:
            await trio.sleep(0.02)


@pytest.mark.manager_config({"agent": {"run_queue_length": 2}})
async def test_runs_past_the_queue_bound_are_refused(cluster: Cluster) -> None:
    token = await start_session(cluster.client)
    blocker = await start_blocker(cluster.client, token)
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(execute, cluster.client, token, "print('queued')")
        await _queued(cluster, 2)
        response = await cluster.client.post(
            f"/kernel/{token}", json={"mode": "query", "code": "print(3)", "runId": None}
        )
        body = assert_problem(response, 429, "execution-queue-full")
        assert "2 runs are already queued" in body["detail"]
        # A stream gets the same refusal as an error frame, then the socket closes.
        async with open_stream(cluster, f"/stream/kernel/{token}/execute") as ws:
            await ws.send_message(json.dumps({"mode": "query", "code": "print(4)", "options": {}}))
            with trio.fail_after(10):
                frame = json.loads(await ws.get_message())
        assert frame["status"] == "error"
        assert "already queued" in frame["msg"]
        # Once the queue drains, the session takes runs again.
        await release_blocker(cluster.client, token, blocker)
    assert stream_text(await execute(cluster.client, token, "print('again')")) == "again\n"


@pytest.mark.manager_config({"agent": {"run_start_rate": 4.0, "run_start_burst": 1}})
async def test_a_kernel_starts_runs_at_its_rate(cluster: Cluster) -> None:
    token = await start_session(cluster.client)
    await execute(cluster.client, token, "import time")
    started = trio.current_time()
    for _ in range(6):
        assert stream_text(await execute(cluster.client, token, "print(1)")) == "1\n"
    elapsed = trio.current_time() - started
    # One start per 1/4 s once the burst (one) is spent: runs wait, nothing is refused.
    assert elapsed >= 6 / 4 * 0.9


#: Tenant A's runs: each holds an agent slot this long.
FLOOD_RUN = "import time\ntime.sleep(0.6)"


@pytest.mark.manager_config({"agent": {"concurrent_runs": 2}})
async def test_a_flooding_tenant_does_not_starve_another(cluster: Cluster) -> None:
    flooded = [await start_session(cluster.client) for _ in range(5)]
    keypair = await KeypairRepository(cluster.harness.db).create(NewKeypair("tenant-b@test"))
    tenant_b = cluster.client.with_credentials(Credentials(keypair.access_key, keypair.secret_key))
    own = await start_session(tenant_b)
    await execute(tenant_b, own, "print(0)")
    slots = cluster.agent.run_slots

    async def flood(token: str) -> None:
        while True:
            await execute(cluster.client, token, FLOOD_RUN)

    latencies = []
    async with trio.open_nursery() as nursery:
        # Tenant A: five sessions (its limit), three clients each, runs back to back.
        for token in flooded:
            for _ in range(3):
                nursery.start_soon(flood, token)
        with trio.fail_after(20):
            while slots.in_use < 2 or slots.waiting < 2:
                await trio.sleep(0.02)
        for _ in range(5):
            assert slots.waiting >= 1, "the flood must keep the agent's slots contended"
            started = trio.current_time()
            results = await execute(tenant_b, own, "print(1)")
            latencies.append(trio.current_time() - started)
            assert stream_text(results) == "1\n"
        nursery.cancel_scope.cancel()
    # B waits at most for one of A's runs to free a slot (0.6 s), never behind the runs
    # A has waiting for slots (a first-come-first-served pool makes that 1.2 s here).
    assert max(latencies) < 1.0, latencies
