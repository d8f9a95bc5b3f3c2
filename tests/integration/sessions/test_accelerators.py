"""GPUs end to end with the mock accelerator plugin: a real manager, a real agent, real
containers. A session asking for GPUs gets devices (CUDA_VISIBLE_DEVICES), the agent
offers and tracks its slots, bad requests are refused, and a restarted agent keeps the
allocations of the kernels it recovers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from crucible.agent.daemon import run_agent
from crucible.agent.service import Agent
from crucible.config import Config
from crucible.db.pool import Database
from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.agents import agents_nursery, heartbeats_recorded
from testlib.server import CLUSTER_SECRET, Harness, make_config, open_harness
from testlib.sessions import create, execute, new_token, removing_containers, stream_text
from testlib.signing import Credentials

TIMEOUT = 60
SETTINGS: dict[str, Any] = {
    # An over-ask waits in the queue this long (spec: then 503 instance-not-available).
    "sessions": {"exec_flush_interval": 1.0, "agent_lost_after": 6.0, "pending_timeout": 1.5},
    "agent": {"heartbeat_interval": 1.0},
}
SHOW_DEVICES = (
    "import os\n"
    "print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['MOCK_ACCELERATOR_SHARES'],"
    " os.environ['MOCK_ACCELERATOR_MEMORY'])"
)


@attrs.define
class GPUCluster:
    harness: Harness
    config: Config
    agent: Agent
    nursery: trio.Nursery
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    async def start_agent(self) -> None:
        """Start (again) the agent, in a cancel scope of its own, and wait until the
        manager has its heartbeat."""

        async def run(task_status: trio.TaskStatus[Agent]) -> None:
            with self.scope:
                await run_agent(self.config, [url], CLUSTER_SECRET, task_status=task_status)

        url = self.harness.url.replace("http://", "ws://")
        self.scope = trio.CancelScope()
        with trio.fail_after(TIMEOUT):
            self.agent = await self.nursery.start(run)
            await self.harness.server.components.agents.wait_linked(self.agent.id)

    async def stop_agent(self) -> None:
        """Stop the agent as a crash would: its containers stay up."""
        self.scope.cancel()
        with trio.fail_after(TIMEOUT):
            while self.agent.id in self.harness.server.components.agents.links:
                await trio.sleep(0.05)

    async def status_info(self, token: str) -> str:
        info = await self.harness.db.fetchval(
            "SELECT status_info FROM kernels WHERE sess_id = $1", token
        )
        assert isinstance(info, str), info
        return info

    async def graphql(self, query: str, *, admin: bool = True) -> Any:
        client = self.harness.as_admin() if admin else self.harness.client
        with trio.fail_after(TIMEOUT):
            response = await client.post("/admin/graphql", json={"query": query})
        assert response.status_code == 200, response.text
        return response.json()


@asynccontextmanager
async def gpu_cluster(
    pg_dsn: str,
    state_dir: Path,
    db: Database,
    mock: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> AsyncIterator[GPUCluster]:
    agent_id = f"test-{state_dir.name}"
    config = make_config(
        pg_dsn,
        state_dir,
        {
            **(extra or {}),
            **SETTINGS,
            "agent": {**SETTINGS["agent"], "id": agent_id, "accelerators": ["mock"]},
            "accelerators": {"mock": mock},
        },
    )
    async with removing_containers(agent_id):
        async with open_harness(config, db) as harness, agents_nursery(harness) as nursery:
            cluster = GPUCluster(harness, config, None, nursery)  # type: ignore[arg-type]
            await cluster.start_agent()
            with trio.fail_after(TIMEOUT):
                await heartbeats_recorded(db, [agent_id])
            yield cluster


@pytest.fixture
async def discrete(
    docker_ready: None, pg_dsn: str, short_state_dir: Path, db: Database
) -> AsyncIterator[GPUCluster]:
    async with gpu_cluster(pg_dsn, short_state_dir, db, {"devices": 2}) as cluster:
        yield cluster


async def _gpu_session(cluster: GPUCluster, gpus: str) -> str:
    token = new_token()
    with trio.fail_after(TIMEOUT):
        response = await create(cluster.harness.client, token, instanceGPUs=gpus)
    assert response.status_code == 201, response.text
    return token


async def _destroy(cluster: GPUCluster, token: str) -> None:
    with trio.fail_after(TIMEOUT):
        response = await cluster.harness.client.request("DELETE", f"/kernel/{token}")
    assert response.status_code == 200, response.text


async def _devices(cluster: GPUCluster, token: str) -> str:
    return stream_text(await execute(cluster.harness.client, token, SHOW_DEVICES)).strip()


async def test_sessions_get_whole_devices_until_none_is_left(discrete: GPUCluster) -> None:
    agents = await discrete.graphql(
        "{ agents { id gpu_slots used_gpu_slots available_slots occupied_slots devices } }"
    )
    (agent,) = agents["agents"]
    assert agent["gpu_slots"] == 2.0 and agent["used_gpu_slots"] == 0.0
    device = {"plugin": "mock", "mem_total_bytes": 16 << 30, "mem_used_bytes": 0}
    assert json.loads(agent["devices"]) == [
        {**device, "device_id": str(i), "utilization_pct": 0.0} for i in range(2)
    ]
    assert json.loads(agent["available_slots"])["cuda.device"] == 2.0

    first = await _gpu_session(discrete, "1")
    second = await _gpu_session(discrete, "1")
    shown = {await _devices(discrete, first), await _devices(discrete, second)}
    assert shown == {f"0 0:1 {16 << 30}", f"1 1:1 {16 << 30}"}
    (agent,) = (await discrete.graphql("{ agents { used_gpu_slots occupied_slots } }"))["agents"]
    assert agent["used_gpu_slots"] == 2.0
    assert json.loads(agent["occupied_slots"])["cuda.device"] == 2.0
    query = "{ compute_sessions { sess_id gpu_slot occupied_slots devices } }"
    with trio.fail_after(TIMEOUT):
        while True:  # the devices' figures come with the next heartbeats
            sessions = await discrete.graphql(query, admin=False)
            by_token = {s["sess_id"]: s for s in sessions["compute_sessions"]}
            if all(json.loads(by_token[t]["devices"]) for t in (first, second)):
                break
            await trio.sleep(0.2)
    assert by_token[first]["gpu_slot"] == 1.0
    assert json.loads(by_token[first]["occupied_slots"])["cuda.device"] == 1
    held = {json.loads(by_token[t]["devices"])[0]["device_id"] for t in (first, second)}
    assert held == {"0", "1"}

    # No device left: the session waits in the queue, then fails; nothing half-made.
    with trio.fail_after(TIMEOUT):
        started = trio.current_time()
        refused = await create(discrete.harness.client, new_token(), instanceGPUs="1")
    assert refused.status_code == 503, refused.text
    assert trio.current_time() - started >= 1.5
    assert "within 1.5 s" in refused.json()["detail"]
    assert discrete.agent.accelerators.free_slots() == {"cuda.device": 0.0}

    # A session without GPUs sees none.
    plain = new_token()
    assert (await create(discrete.harness.client, plain)).status_code == 201
    code = "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'none'))"
    assert stream_text(await execute(discrete.harness.client, plain, code)).strip() == "none"

    # A destroyed session's device is free again.
    await _destroy(discrete, first)
    assert discrete.agent.accelerators.free_slots() == {"cuda.device": 1.0}
    # Its GPU time is counted: one GPU for as long as it lived.
    lived = await discrete.harness.db.fetchval(
        "SELECT extract(epoch FROM terminated_at - created_at) * 1000 FROM kernels"
        " WHERE sess_id = $1",
        first,
    )
    usage = await discrete.graphql('{ usage(period: "total") { gpu_time_ms } }', admin=False)
    (record,) = usage["usage"]
    assert record["gpu_time_ms"] == round(float(lived))
    third = await _gpu_session(discrete, "1")
    assert (await _devices(discrete, third)).split()[0] in {"0", "1"}


@pytest.mark.parametrize(
    ("gpus", "message"),
    [
        ("-1", "zero or a positive number"),
        ("abc", "must be a number of GPUs"),
        ("0.001", "steps of 0.01"),
        ("0.5", "whole GPUs only"),
        (True, "must be a number"),
    ],
)
async def test_bad_gpu_requests_are_refused(discrete: GPUCluster, gpus: Any, message: str) -> None:
    with trio.fail_after(TIMEOUT):
        response = await create(discrete.harness.client, new_token(), instanceGPUs=gpus)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]
    assert discrete.agent.accelerators.free_slots() == {"cuda.device": 2.0}
    assert not discrete.agent.kernels


async def test_fractional_shares_one_device(
    docker_ready: None, pg_dsn: str, short_state_dir: Path, db: Database
) -> None:
    mock = {"devices": 1, "mode": "fractional", "memory": "8GiB"}
    async with gpu_cluster(pg_dsn, short_state_dir, db, mock) as cluster:
        half = await _gpu_session(cluster, "0.5")
        quarter = await _gpu_session(cluster, "0.25")
        assert await _devices(cluster, half) == f"0 0:0.5 {4 << 30}"
        assert await _devices(cluster, quarter) == f"0 0:0.25 {2 << 30}"
        (agent,) = (await cluster.graphql("{ agents { gpu_slots used_gpu_slots } }"))["agents"]
        assert agent == {"gpu_slots": 1.0, "used_gpu_slots": 0.75}
        with trio.fail_after(TIMEOUT):
            refused = await create(cluster.harness.client, new_token(), instanceGPUs="0.5")
        assert refused.status_code == 503, refused.text
        # A whole GPU on a fractional agent is a whole share.
        await _destroy(cluster, half)
        await _destroy(cluster, quarter)
        whole = await _gpu_session(cluster, "1")
        assert await _devices(cluster, whole) == f"0 0:1 {8 << 30}"


async def test_a_restarted_agent_keeps_the_allocations(discrete: GPUCluster) -> None:
    kept = await _gpu_session(discrete, "1")
    device = (await _devices(discrete, kept)).split()[0]
    await discrete.stop_agent()
    await discrete.start_agent()
    # Recovered before the agent started: the kernel still holds its device, so the next
    # session gets the other one.
    assert len(discrete.agent.kernels) == 1
    assert discrete.agent.accelerators.free_slots() == {"cuda.device": 1.0}
    assert (await _devices(discrete, kept)).split()[0] == device
    other = await _gpu_session(discrete, "1")
    assert (await _devices(discrete, other)).split()[0] == {"0": "1", "1": "0"}[device]


async def test_an_agent_without_the_devices_refuses_with_nothing_half_made(
    discrete: GPUCluster,
) -> None:
    # Something else on the agent holds both devices, which the manager cannot know.
    discrete.agent.accelerators.allocate("held-elsewhere", {"cuda.device": 2})
    token = new_token()
    with trio.fail_after(TIMEOUT):
        response = await create(discrete.harness.client, token, instanceGPUs="1")
    assert response.status_code == 500, response.text
    problem = response.json()
    assert problem["type"].endswith("kernel-creation-failed")
    assert problem["agent-details"]["type"].endswith("/agent-insufficient-resources")
    assert "1 cuda.device asked, 0 free on this agent" in problem["agent-details"]["title"]
    assert await discrete.status_info(token) == "error: creation-failed"
    assert not discrete.agent.kernels
    discrete.agent.accelerators.free("held-elsewhere")
    assert discrete.agent.accelerators.free_slots() == {"cuda.device": 2.0}


async def test_a_policy_caps_a_keys_gpus(
    docker_ready: None, pg_dsn: str, short_state_dir: Path, db: Database
) -> None:
    policies = {"resource_policies": {"one-gpu": {"max_gpu_slots": 1.0}}}
    mock = {"devices": 2, "mode": "fractional"}
    async with gpu_cluster(pg_dsn, short_state_dir, db, mock, policies) as cluster:
        new = NewKeypair("gpu@test", concurrency_limit=5, resource_policy="one-gpu")
        kp = await KeypairRepository(db).create(new)
        client = cluster.harness.client.with_credentials(Credentials(kp.access_key, kp.secret_key))
        # One session is capped to the policy's GPU...
        capped = new_token()
        with trio.fail_after(TIMEOUT):
            assert (await create(client, capped, instanceGPUs="2")).status_code == 201
        code = "import os; print(os.environ['MOCK_ACCELERATOR_SHARES'])"
        assert stream_text(await execute(client, capped, code)).strip() == "0:1"
        # ... and the key's sessions together hold no more than it.
        with trio.fail_after(TIMEOUT):
            refused = await create(client, new_token(), instanceGPUs="0.5")
            assert (await create(client, new_token())).status_code == 201
        assert refused.status_code == 412, refused.text
        assert "allows 1 GPUs in total; 1 are in use" in refused.json()["detail"]
