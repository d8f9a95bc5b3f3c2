"""Issue 9, findings 2 and 3, against a real agent: the payloads that crashed the manager
or reached Docker unchecked are 400s, nothing is created, and the cluster keeps working."""

from __future__ import annotations

import pytest
import trio

from testlib.problems import assert_problem
from testlib.sessions import Cluster, agent_containers, create, execute, new_token, stream_text

MiB = 1024 * 1024


async def _still_working(cluster: Cluster) -> None:
    assert (await cluster.client.get("/")).status_code == 200
    token = new_token()
    assert (await create(cluster.client, token)).status_code == 201
    assert stream_text(await execute(cluster.client, token, "print(6 * 7)")) == "42\n"


@pytest.mark.parametrize(
    ("environ", "status", "problem"),
    [
        # UntranslatableCharacterError in the INSERT, a 500, before.
        ({"GREETING": "hello\x00world"}, 400, "invalid-api-params"),
        # kernel-creation-failed from Docker, a 500, before.
        ({"": "x"}, 400, "invalid-api-params"),
        ({"A=B": "x"}, 400, "invalid-api-params"),
        ({"1ST": "x"}, 400, "invalid-api-params"),
        ({"BIG": "x" * (40 * 1024)}, 400, "invalid-api-params"),
        ({f"V{i}": "x" for i in range(1000)}, 400, "invalid-api-params"),
        # The ~2 MB environ of finding 2: the body is over limits.max_json_body_bytes.
        ({"BIG": "x" * (2 * MiB)}, 413, "request-too-large"),
    ],
    ids=["nul-value", "empty-name", "equals", "digit", "big-value", "many", "huge-body"],
)
async def test_bad_environ_is_refused_and_creates_nothing(
    cluster: Cluster, environ: dict[str, str], status: int, problem: str
) -> None:
    token = new_token()
    before = await agent_containers(cluster.agent.id)
    with trio.fail_after(30):
        response = await create(cluster.client, token, environ=environ)
    assert_problem(response, status, problem)
    assert await cluster.harness.db.fetchval(
        "SELECT count(*) FROM kernels WHERE sess_id = $1", token
    ) == 0
    assert await agent_containers(cluster.agent.id) == before
    await _still_working(cluster)


async def test_good_environ_reaches_the_kernel(cluster: Cluster) -> None:
    token = new_token()
    environ = {"GREETING": "héllo wörld", "_X1": "a=b c"}
    assert (await create(cluster.client, token, environ=environ)).status_code == 201
    code = "import os\nprint(os.environ['GREETING'], os.environ['_X1'])"
    assert stream_text(await execute(cluster.client, token, code)) == "héllo wörld a=b c\n"


async def test_oversized_code_is_400_and_the_session_survives(cluster: Cluster) -> None:
    token = new_token()
    assert (await create(cluster.client, token)).status_code == 201
    big = "x = 1\n" * (1_200_000 // 6)  # the 1.2 MB query of finding 2
    with trio.fail_after(30):
        for body in (
            {"mode": "query", "code": big},
            {"mode": "batch", "code": "", "options": {"build": "x" * (64 * 1024), "exec": "*"}},
            {"mode": "complete", "code": big},
        ):
            response = await cluster.client.post(f"/kernel/{token}", json=body)
            problem = assert_problem(response, 400, "invalid-api-params")
            assert "limits.max_" in problem["detail"]
    assert stream_text(await execute(cluster.client, token, "print(6 * 7)")) == "42\n"
    await _still_working(cluster)
