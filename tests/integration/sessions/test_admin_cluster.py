"""Admin features against real sessions: force-kill on freeze (spec 8), resource-policy caps
and the GraphQL view of live sessions (spec 7)."""

from __future__ import annotations

import pytest
import trio

from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.sessions import Cluster, agent_containers, create, new_token
from testlib.signing import Credentials

TIMEOUT = 60


async def _live(cluster: Cluster) -> int:
    return await cluster.harness.server.components.sessions.count_live()


async def test_freeze_with_force_kill_destroys_running_sessions(cluster: Cluster) -> None:
    admin = cluster.harness.as_admin()
    tokens = [new_token(), new_token()]
    for token in tokens:
        assert (await create(cluster.client, token)).status_code == 201
    admins_own = new_token()
    assert (await create(admin, admins_own)).status_code == 201
    assert await _live(cluster) == 3
    assert len(await agent_containers(cluster.agent.id, include_stopped=False)) == 3
    with trio.fail_after(TIMEOUT):
        response = await admin.put("/manager/status", json={"status": "frozen", "force_kill": True})
    assert response.status_code == 204, response.text
    assert await _live(cluster) == 0
    rows = await cluster.harness.db.fetch("SELECT status, status_info FROM kernels")
    assert {(row["status"], row["status_info"]) for row in rows} == {("TERMINATED", "force-killed")}
    with trio.fail_after(TIMEOUT):
        while await agent_containers(cluster.agent.id):
            await trio.sleep(0.2)
        status = (await admin.get("/manager/status")).json()
    assert status == {"status": "frozen", "active_sessions": 0}
    # Frozen: no new sessions.
    assert (await create(cluster.client, new_token())).status_code == 503
    with trio.fail_after(TIMEOUT):
        assert (await admin.put("/manager/status", json={"status": "running"})).status_code == 204
    # The ended sessions show in the admin view as terminated.
    with trio.fail_after(TIMEOUT):
        listing = await cluster.client.post(
            "/admin/graphql",
            json={"query": '{ compute_sessions(status: "TERMINATED") { sess_id status_info } }'},
        )
    assert {s["sess_id"] for s in listing.json()["compute_sessions"]} == set(tokens)


@pytest.mark.manager_config(
    {
        "resource_policies": {
            "half": {
                "max_concurrent_sessions": 2,
                "max_cpu_cores": 0.5,
                "max_memory_bytes": 256 * 1024 * 1024,
            }
        }
    }
)
async def test_policy_caps_a_real_session(cluster: Cluster) -> None:
    repo = KeypairRepository(cluster.harness.db)
    kp = await repo.create(NewKeypair("half@test", concurrency_limit=5, resource_policy="half"))
    client = cluster.client.with_credentials(Credentials(kp.access_key, kp.secret_key))
    token = new_token()
    response = await create(client, token, instanceCores="2", instanceMemory=1.0)
    assert response.status_code == 201, response.text
    # The container really got the capped resources.
    container = await cluster.harness.db.fetchval(
        "SELECT container_id FROM kernels WHERE sess_id = $1", token
    )
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [
                "docker",
                "inspect",
                "-f",
                "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} "
                "{{.HostConfig.CpuQuota}} {{.HostConfig.CpuPeriod}}",
                container,
            ],
            capture_stdout=True,
        )
    memory, nano_cpus, quota, period = (int(v) for v in done.stdout.decode().split())
    assert memory == 256 * 1024 * 1024
    assert nano_cpus == 500_000_000 or quota * 2 == period, done.stdout
    with trio.fail_after(TIMEOUT):
        view = await client.post(
            "/admin/graphql",
            json={"query": "{ compute_sessions { sess_id cpu_slot mem_slot status } }"},
        )
    assert view.json() == {
        "compute_sessions": [
            {"sess_id": token, "cpu_slot": 0.5, "mem_slot": 256, "status": "RUNNING"}
        ]
    }
    # A second 0.5-core session would exceed the policy's cores in total.
    second = await create(client, new_token())
    assert second.status_code == 412, second.text
    assert second.json()["type"].endswith("/quota-exceeded")
