"""The agent's warm pool (docs/internals.md, "The warm pool") with a real manager, agent
and Docker engine: claims, refills, the cold path when a request does not fit."""

from __future__ import annotations

import json

import pytest
import trio

from crucible.agent.docker.errors import DockerError
from crucible.kernels.contract import CONTAINER_NAME_PREFIX, LABEL_KERNEL_ID, LABEL_POOL
from testlib.sessions import Cluster, create, execute, new_token, stream_text

from .conftest import POOLED_KERNELS, wait_for_pool


@pytest.fixture
def kernel_start() -> str:
    return "pooled"


async def _inspect(container: str) -> dict[str, object]:
    with trio.fail_after(30):
        done = await trio.run_process(["docker", "inspect", container], capture_stdout=True)
    result = json.loads(done.stdout)[0]
    assert isinstance(result, dict)
    return result


async def test_a_session_claims_a_pooled_kernel_and_the_pool_refills(cluster: Cluster) -> None:
    pool = cluster.agent.pool
    token = new_token()
    response = await create(cluster.client, token, environ={"GREETING": "hello pool"})
    assert response.status_code == 201, response.text
    assert pool.status().claims == 1
    (supervisor,) = cluster.agent.kernels.values()
    # A clean /home/work and /tmp, and the host name a cold kernel has (its container's).
    code = (
        "import os, socket\n"
        "print(6*7, os.environ['GREETING'], os.listdir('.'), os.listdir('/tmp'))\n"
        "print(socket.gethostname())"
    )
    out = stream_text(await execute(cluster.client, token, code))
    assert out == f"42 hello pool [] []\n{supervisor.container_id[:12]}\n"
    # What a claimed kernel's environment holds reaches processes it starts too.
    shell = stream_text(
        await execute(cluster.client, token, "import os; os.system('echo $GREETING')")
    )
    assert shell == "hello pool\n"
    # Renamed as a cold kernel is named (in the background).
    with trio.fail_after(10):
        while (raw := await _inspect(supervisor.container_id))["Name"] != (
            f"/{CONTAINER_NAME_PREFIX}{supervisor.info.kernel_id}"
        ):
            await trio.sleep(0.1)
    labels = raw["Config"]["Labels"]  # type: ignore[index]
    assert LABEL_POOL in labels and labels[LABEL_KERNEL_ID].startswith("pool-")
    # The claim is recorded for a restarted agent; the pool is back to its size.
    assert pool.claims.read(supervisor.container_id) == supervisor.info
    await wait_for_pool(cluster.agent, POOLED_KERNELS)
    # Destroyed like any session: container and claim record gone.
    assert (await cluster.client.request("DELETE", f"/kernel/{token}")).status_code == 200
    assert pool.claims.read(supervisor.container_id) is None


async def test_limits_that_differ_are_applied_to_the_claimed_kernel(cluster: Cluster) -> None:
    token = new_token()
    response = await create(cluster.client, token, instanceCores=0.5, instanceMemory=0.25)
    assert response.status_code == 201, response.text
    assert cluster.agent.pool.status().claims == 1
    (supervisor,) = cluster.agent.kernels.values()
    host = (await _inspect(supervisor.container_id))["HostConfig"]
    assert host["NanoCpus"] == 500_000_000  # type: ignore[index]
    assert host["Memory"] == 256 * 1024**2  # type: ignore[index]
    assert stream_text(await execute(cluster.client, token, "print(6*7)")) == "42\n"


async def test_another_image_takes_the_cold_path(cluster: Cluster) -> None:
    token = new_token()
    response = await create(cluster.client, token, lang="c")
    if response.status_code == 404:
        pytest.skip("no C image here")
    assert response.status_code == 201, response.text
    pool = cluster.agent.pool
    assert pool.status().claims == 0
    (supervisor,) = cluster.agent.kernels.values()
    labels = (await _inspect(supervisor.container_id))["Config"]["Labels"]  # type: ignore[index]
    assert LABEL_POOL not in labels and labels[LABEL_KERNEL_ID] == supervisor.info.kernel_id
    assert pool.size == POOLED_KERNELS


async def test_limits_docker_update_refuses_take_the_cold_path(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine refuses an update, e.g. a memory limit below what the container uses
    # already: injected at the Docker boundary, the one place such a refusal comes from.
    async def refuse(container: str, **limits: object) -> None:
        raise DockerError(f"update {container}: Minimum memory limit can not be less than")

    monkeypatch.setattr(cluster.agent.driver, "update_limits", refuse)
    pool = cluster.agent.pool
    token = new_token()
    response = await create(cluster.client, token, instanceMemory=0.25)
    assert response.status_code == 201, response.text
    status = pool.status()
    assert (status.claims, status.misses) == (0, 1)
    (supervisor,) = cluster.agent.kernels.values()
    labels = (await _inspect(supervisor.container_id))["Config"]["Labels"]  # type: ignore[index]
    assert LABEL_POOL not in labels
    assert stream_text(await execute(cluster.client, token, "print(6*7)")) == "42\n"
    # The kernel that did not fit was discarded, and the pool refills.
    await wait_for_pool(cluster.agent, POOLED_KERNELS)


@pytest.mark.manager_config({"pool": {"max_memory_bytes": 768 * 1024**2}})
async def test_the_pool_holds_no_more_than_its_memory_cap(cluster: Cluster) -> None:
    # Each pooled kernel counts at its 512 MiB limit: two would exceed 768 MiB.
    pool = cluster.agent.pool
    await wait_for_pool(cluster.agent, 1)
    await trio.sleep(3 * cluster.config.pool.check_interval)
    assert pool.size == 1 and pool.memory_bytes <= 768 * 1024**2


async def test_memory_pressure_shrinks_the_pool(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = cluster.agent.pool
    assert pool.size == POOLED_KERNELS
    # The host's available memory (its gauge, /proc/meminfo) drops below the floor:
    # pooled kernels go, none comes.
    monkeypatch.setattr(pool, "_available", lambda: 10 * 1024**2)
    with trio.fail_after(30):
        while pool.size or pool.status().starting or await pool_containers(cluster):
            await trio.sleep(0.1)
    # A session still starts, on the cold path.
    token = new_token()
    assert (await create(cluster.client, token)).status_code == 201
    assert stream_text(await execute(cluster.client, token, "print(6*7)")) == "42\n"


async def pool_containers(cluster: Cluster) -> list[str]:
    argv = ["docker", "ps", "-aq", "--filter", f"label=crucible.agent-id={cluster.agent.id}"]
    argv += ["--filter", f"label={LABEL_POOL}"]
    with trio.fail_after(30):
        done = await trio.run_process(argv, capture_stdout=True)
    return done.stdout.decode().split()


POOL_QUERY = (
    "query($id: String!) { agent(agent_id: $id) { warm_pool_ready warm_pool_starting "
    "warm_pool_mem_bytes warm_pool_claims warm_pool_misses } }"
)


async def test_the_pool_is_visible_in_the_heartbeat_and_graphql(cluster: Cluster) -> None:
    report = cluster.agent.heartbeat().agent.pool
    assert report is not None
    assert report.ready == {"crucible/kernel-python:3.11": POOLED_KERNELS}
    assert report.memory_bytes == POOLED_KERNELS * cluster.config.sessions.default_memory_bytes
    token = new_token()
    assert (await create(cluster.client, token)).status_code == 201
    admin = cluster.harness.as_admin()
    expected = {
        "warm_pool_ready": POOLED_KERNELS,
        "warm_pool_starting": 0,
        "warm_pool_mem_bytes": float(report.memory_bytes),
        "warm_pool_claims": 1,
        "warm_pool_misses": 0,
    }
    with trio.fail_after(30):  # a heartbeat after the claim and the refill
        while True:
            response = await admin.post(
                "/admin/graphql", json={"query": POOL_QUERY, "variables": {"id": cluster.agent.id}}
            )
            assert response.status_code == 200, response.text
            if response.json()["agent"] == expected:
                break
            await trio.sleep(0.2)


async def test_a_claimed_kernel_restarts_with_its_files_folders_and_environment(
    cluster: Cluster,
) -> None:
    client = cluster.client
    assert (await client.post("/folders", json={"name": "data", "host": []})).status_code == 201
    token = new_token()
    response = await create(client, token, mounts=["data"], environ={"KEPT": "yes"})
    assert response.status_code == 201, response.text
    assert cluster.agent.pool.status().claims == 1
    code = "open('keep.txt', 'w').write('kept')\nopen('data/f.txt', 'w').write('in the folder')"
    await execute(client, token, code)
    assert (await client.request("PATCH", f"/kernel/{token}")).status_code == 204
    code = (
        "import os\nprint(open('keep.txt').read(), open('data/f.txt').read(), os.environ['KEPT'])"
    )
    assert stream_text(await execute(client, token, code)) == "kept in the folder yes\n"
    assert (await client.request("DELETE", f"/kernel/{token}")).status_code == 200
