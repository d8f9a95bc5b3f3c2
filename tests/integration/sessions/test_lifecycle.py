"""Session lifecycle over REST against a real agent and real containers (spec 4.1-4.5)."""

from __future__ import annotations

import pytest

from testlib.sessions import Cluster, create, execute, new_token, stream_text


async def test_create_is_get_or_create(cluster: Cluster) -> None:
    token = new_token()
    first = await create(cluster.client, token)
    assert first.status_code == 201, first.text
    assert first.json() == {"kernelId": token, "created": True, "servicePorts": []}
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
    cluster.harness.server.ctx.keypair_cache.invalidate(cluster.harness.user.access_key)
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
