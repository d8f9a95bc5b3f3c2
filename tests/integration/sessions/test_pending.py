"""The pending queue through the API, with a real agent that offers one core: a create
that fits no agent waits (PENDING, visible to the admin) and returns once room frees;
it fails with 503 after ``sessions.pending_timeout``, or at once when no agent could
ever hold it; a client that goes away while waiting leaves nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio

from testlib.sessions import Cluster, agent_containers, create, execute, new_token, stream_text

TIMEOUT = 60
#: The agent offers exactly one core: a second one-core session must wait.
ONE_CORE: dict[str, Any] = {"agent": {"cpu_cores": 1, "cpu_overcommit": 1.0}}


async def kernel_row(cluster: Cluster, token: str) -> dict[str, Any] | None:
    row = await cluster.harness.db.fetchrow(
        """SELECT id::text AS id, status, status_info, agent_id, container_id FROM kernels
           WHERE sess_id = $1 ORDER BY created_at DESC LIMIT 1""",
        token,
    )
    return None if row is None else dict(row)


async def wait_status(cluster: Cluster, token: str, status: str) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        while True:
            row = await kernel_row(cluster, token)
            if row is not None and row["status"] == status:
                return row
            await trio.sleep(0.05)


async def containers_of(kernel_id: str) -> list[str]:
    argv = ["docker", "ps", "-aq", "--filter", f"label=crucible.kernel-id={kernel_id}"]
    with trio.fail_after(30):
        done = await trio.run_process(argv, capture_stdout=True)
    return done.stdout.decode().split()


@attrs.frozen
class Waiting:
    """A session holding the one core (`holder`), and a create waiting behind it."""

    holder: str
    waiter: str
    #: The waiter's row while it was PENDING.
    row: dict[str, Any]
    #: The waiting create's answer, once it came.
    answers: list[httpx.Response]
    scope: trio.CancelScope

    def hang_up(self) -> None:
        """The waiting client goes away."""
        self.scope.cancel()


@asynccontextmanager
async def waiting_behind_a_holder(cluster: Cluster) -> AsyncIterator[Waiting]:
    """Create a one-core session, then a second one that waits (PENDING) in the queue;
    the block ends once the waiting create has its answer, or has hung up."""
    holder, waiter = new_token(), new_token()
    with trio.fail_after(TIMEOUT):
        assert (await create(cluster.client, holder, instanceCores="1")).status_code == 201
    answers: list[httpx.Response] = []
    async with trio.open_nursery() as nursery:

        async def create_waiter() -> None:
            answers.append(await create(cluster.client, waiter, instanceCores="1"))

        nursery.start_soon(create_waiter)
        row = await wait_status(cluster, waiter, "PENDING")
        yield Waiting(holder, waiter, row, answers, nursery.cancel_scope)


@pytest.mark.manager_config(ONE_CORE)
async def test_a_create_waits_in_the_queue_and_runs_when_room_frees(cluster: Cluster) -> None:
    async with waiting_behind_a_holder(cluster) as waiting:
        first, second, answers = waiting.holder, waiting.waiter, waiting.answers
        assert waiting.row["agent_id"] is None and not answers
        # The admin sees it waiting, with its status.
        with trio.fail_after(TIMEOUT):
            listing = await cluster.harness.as_admin().post(
                "/admin/graphql",
                json={
                    "query": "query($k: String) { compute_sessions(access_key: $k, "
                    'status: "PENDING") { sess_id status } }',
                    "variables": {"k": cluster.harness.user.access_key},
                },
            )
        assert listing.status_code == 200, listing.text
        assert listing.json()["compute_sessions"] == [{"sess_id": second, "status": "PENDING"}]
        with trio.fail_after(TIMEOUT):
            assert (await cluster.client.request("DELETE", f"/kernel/{first}")).status_code == 200
    assert answers[0].status_code == 201, answers[0].text
    ran = await execute(cluster.client, second, "print(6 * 7)")
    assert stream_text(ran) == "42\n"
    assert (await kernel_row(cluster, second) or {})["agent_id"] == cluster.agent.id


@pytest.mark.manager_config({**ONE_CORE, "sessions": {"pending_timeout": 1.5}})
async def test_pending_timeout_is_503_and_leaves_nothing(cluster: Cluster) -> None:
    holder, waiter = new_token(), new_token()
    with trio.fail_after(TIMEOUT):
        assert (await create(cluster.client, holder, instanceCores="1")).status_code == 201
        began = trio.current_time()
        refused = await create(cluster.client, waiter, instanceCores="1")
    assert refused.status_code == 503
    assert refused.json()["type"].endswith("/instance-not-available")
    assert "within 1.5 s" in refused.json()["title"] + refused.json().get("detail", "")
    assert 1.4 < trio.current_time() - began < 10
    row = await kernel_row(cluster, waiter)
    assert row is not None
    assert (row["status"], row["status_info"], row["agent_id"]) == (
        "TERMINATED",
        "pending-timeout",
        None,
    )
    assert await containers_of(row["id"]) == []
    # Only the holder's container exists.
    assert len(await agent_containers(cluster.agent.id, include_stopped=True)) == 1


@pytest.mark.manager_config(ONE_CORE)
async def test_a_client_gone_while_pending_leaves_nothing(cluster: Cluster) -> None:
    async with waiting_behind_a_holder(cluster) as waiting:
        holder, waiter = waiting.holder, waiting.waiter
        waiting.hang_up()
    ended = await wait_status(cluster, waiter, "TERMINATED")
    assert ended["status_info"] == "creation-cancelled"
    # Freeing the room now places nothing: the queue is empty.
    with trio.fail_after(TIMEOUT):
        assert (await cluster.client.request("DELETE", f"/kernel/{holder}")).status_code == 200
    await trio.sleep(0.5)
    assert await containers_of(ended["id"]) == []
    assert (await kernel_row(cluster, waiter) or {})["status"] == "TERMINATED"


@pytest.mark.manager_config(ONE_CORE)
async def test_a_session_no_agent_could_hold_is_refused_at_once(cluster: Cluster) -> None:
    token = new_token()
    with trio.fail_after(10):
        refused = await create(cluster.client, token, instanceCores="2")
    assert refused.status_code == 503
    problem = refused.json()
    assert problem["type"].endswith("/instance-not-available")
    assert "never be placed" in problem["title"] + problem.get("detail", "")
    assert "largest agent offers 1" in problem["title"] + problem.get("detail", "")
    assert await kernel_row(cluster, token) is None


@pytest.mark.manager_config(ONE_CORE)
async def test_a_waiting_session_can_be_terminated(cluster: Cluster) -> None:
    async with waiting_behind_a_holder(cluster) as waiting:
        holder, waiter, answers = waiting.holder, waiting.waiter, waiting.answers
        with trio.fail_after(TIMEOUT):
            ended = await cluster.client.request("DELETE", f"/kernel/{waiter}")
        assert ended.status_code == 200, ended.text
    # The waiting create learns at once that its session is gone: a clear problem.
    assert answers[0].status_code >= 500
    assert answers[0].json()["type"].endswith("/kernel-creation-failed")
    assert "ended while it waited" in answers[0].json().get("detail", "")
    assert (await kernel_row(cluster, waiter) or {})["status"] == "TERMINATED"
    assert await containers_of(waiting.row["id"]) == []
    # The holder is untouched.
    assert stream_text(await execute(cluster.client, holder, "print('ok')")) == "ok\n"
