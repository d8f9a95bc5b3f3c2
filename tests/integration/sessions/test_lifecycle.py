"""Session lifecycle over REST against a real agent and real containers (spec 4.1-4.5)."""

from __future__ import annotations

import pytest
import trio

from testlib.sessions import Cluster, agent_containers, create, execute, new_token, stream_text


async def test_create_is_get_or_create(cluster: Cluster) -> None:
    token = new_token()
    first = await create(cluster.client, token)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["kernelId"] == token and body["created"] is True
    # The python image offers Jupyter (spec 9; tests/integration/sessions/test_service_ports.py).
    assert [port["name"] for port in body["servicePorts"]] == ["jupyter"]
    again = await create(cluster.client, token, "python:latest")
    assert again.status_code == 201
    assert again.json()["created"] is False


async def test_unknown_image_is_image_not_found(cluster: Cluster) -> None:
    response = await create(cluster.client, new_token(), "cobol:1960")
    assert response.status_code == 404
    assert response.json()["type"].endswith("/image-not-found")


async def test_bad_tokens_are_invalid_params(cluster: Cluster) -> None:
    for token in ("ab", "x" * 65, "-lead", "sp ace", "ünï"):
        response = await create(cluster.client, token)
        assert response.status_code == 400, token
        assert response.json()["type"].endswith("/invalid-api-params")


async def test_info_destroy_and_not_found(cluster: Cluster) -> None:
    token = new_token()
    assert (await create(cluster.client, token, instanceMemory="0.25")).status_code == 201
    info = (await cluster.client.get(f"/kernel/{token}")).json()
    assert info["lang"] == "python"
    assert info["memoryLimit"] == 256 * 1024  # KiB
    assert isinstance(info["age"], int)
    destroyed = await cluster.client.request("DELETE", f"/kernel/{token}")
    assert destroyed.status_code == 200
    stats = destroyed.json()["stats"]
    assert stats is None or all(isinstance(v, int) for v in stats.values())
    gone = await cluster.client.get(f"/kernel/{token}")
    assert gone.status_code == 404
    assert gone.json()["type"].endswith("/kernel-not-found")
    # The token is free again.
    assert (await create(cluster.client, token)).json()["created"] is True


@pytest.mark.manager_config({"keypairs": {"concurrency_limit": 5}})
async def test_concurrency_limit(cluster: Cluster) -> None:
    await cluster.harness.db.execute(
        "UPDATE keypairs SET concurrency_limit = 2 WHERE access_key = $1",
        cluster.harness.user.access_key,
    )
    cluster.harness.server.components.keypair_cache.invalidate(cluster.harness.user.access_key)
    for _ in range(2):
        assert (await create(cluster.client, new_token())).status_code == 201
    refused = await create(cluster.client, new_token())
    assert refused.status_code == 412
    assert refused.json()["type"].endswith("/quota-exceeded")


async def test_restart_keeps_files_and_drops_state(cluster: Cluster) -> None:
    token = new_token()
    await create(cluster.client, token)
    await execute(cluster.client, token, "x = 41\nopen('keep.txt', 'w').write('kept')")
    response = await cluster.client.request("PATCH", f"/kernel/{token}")
    assert response.status_code == 204
    results = await execute(
        cluster.client, token, "print(open('keep.txt').read())\nprint('x' in globals())"
    )
    assert stream_text(results) == "kept\nFalse\n"


async def test_logs(cluster: Cluster) -> None:
    token = new_token()
    await create(cluster.client, token)
    response = await cluster.client.get(f"/kernel/{token}/logs")
    assert response.status_code == 200
    assert isinstance(response.json()["result"]["logs"], str)


@pytest.mark.manager_config({"agent": {"cpu_overcommit": 0.1}})
async def test_no_room_is_instance_not_available(cluster: Cluster) -> None:
    # Two cores at 0.1x overcommit offer 0.2 cores: a one-core session does not fit.
    response = await create(cluster.client, new_token(), instanceCores="1")
    assert response.status_code == 503
    assert response.json()["type"].endswith("/instance-not-available")


@pytest.mark.manager_config({"sessions": {"idle_timeout": 1}})
async def test_idle_sessions_are_reaped(cluster: Cluster) -> None:
    token = new_token()
    assert (await create(cluster.client, token)).status_code == 201
    await cluster.harness.server.components.activity.flush()
    with trio.fail_after(10):
        while not await cluster.harness.server.components.reaper.reap_idle():
            await trio.sleep(0.3)
    assert (await cluster.client.get(f"/kernel/{token}")).status_code == 404
    info = await cluster.harness.db.fetchval(
        "SELECT status_info FROM kernels WHERE sess_id = $1", token
    )
    assert info == "idle-timeout"


async def test_destroy_during_a_long_run(cluster: Cluster) -> None:
    token = new_token()
    await create(cluster.client, token)
    first = await cluster.client.post(
        f"/kernel/{token}", json={"mode": "query", "code": "while True: pass", "runId": None}
    )
    run_id = first.json()["result"]["runId"]
    destroyed = await cluster.client.request("DELETE", f"/kernel/{token}")
    assert destroyed.status_code == 200
    after = await cluster.client.post(
        f"/kernel/{token}", json={"mode": "continue", "code": "", "runId": run_id}
    )
    assert after.status_code == 404
    with trio.fail_after(30):
        while await agent_containers(cluster.agent.id, include_stopped=False):
            await trio.sleep(0.3)


async def test_overlapping_runs_are_queued_in_order(cluster: Cluster) -> None:
    token = new_token()
    await create(cluster.client, token)
    order: list[str] = []

    async def run(label: str, delay: float) -> None:
        await trio.sleep(delay)
        code = f"import time\ntime.sleep(0.5)\nprint('{label}')"
        order.append(stream_text(await execute(cluster.client, token, code)).strip())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "first", 0)
        nursery.start_soon(run, "second", 0.1)
        nursery.start_soon(run, "third", 0.2)
    assert order == ["first", "second", "third"]
