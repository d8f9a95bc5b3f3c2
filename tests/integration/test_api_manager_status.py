"""Spec 8 (manager status) and the spec 1.8 gate."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from quart import Blueprint

from crucible.api.guard import authenticated, requires_running
from crucible.config import Config
from crucible.db.pool import Database
from crucible.keypairs import KeypairRepository, NewKeypair
from crucible.manager.status import ManagerStatus, ManagerStatusStore
from testlib.problems import assert_problem
from testlib.server import Harness, running_manager
from testlib.signing import Credentials, SigningClient

TIMEOUT = 10


async def test_get_status(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        # The SDK sends a meaningless JSON body with this GET; it must be ignored.
        response = await manager.client.get("/manager/status", json={"status": "frozen"})
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "running", "active_sessions": 0}


@pytest.mark.parametrize("prefix", ["", "/v2", "/v4"])
async def test_freeze_and_unfreeze(manager: Harness, prefix: str) -> None:
    admin = manager.as_admin()
    url = prefix + "/manager/status"
    with trio.fail_after(TIMEOUT):
        response = await admin.put(url, json={"status": "frozen"})
        assert response.status_code == 204, response.text
        assert response.content == b""
        assert (await admin.get(url)).json()["status"] == "frozen"
        # Frozen: authenticated endpoints that do not create anything keep working.
        assert (await manager.client.get("/auth/test")).status_code == 200
        response = await admin.put(url, json={"status": "running"})
        assert response.status_code == 204, response.text
        assert (await admin.get(url)).json()["status"] == "running"


async def test_freeze_with_force_kill(manager: Harness) -> None:
    killed: list[bool] = []

    async def destroy_all() -> int:
        killed.append(True)
        return 0

    # The hook freeze(force_kill) calls; sessions themselves are tested elsewhere.
    manager.server.components.sessions.destroy_all = destroy_all  # type: ignore[method-assign]
    with trio.fail_after(TIMEOUT):
        response = await manager.as_admin().put(
            "/manager/status", json={"status": "frozen", "force_kill": True}
        )
    assert response.status_code == 204, response.text
    assert killed == [True]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"status": None},
        {"status": "terminated"},
        {"status": "preparing"},
        {"status": 1},
        {"status": ["frozen"]},
        {"status": "frozen", "force_kill": "yes"},
        {"status": "FROZEN"},
    ],
)
async def test_put_status_rejects_bad_bodies(manager: Harness, body: dict[str, Any]) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.as_admin().put("/manager/status", json=body)
        assert_problem(response, 400, "invalid-api-params")
        assert (await manager.client.get("/manager/status")).json()["status"] == "running"


async def test_status_is_shared_through_the_database(db: Database) -> None:
    one, two = ManagerStatusStore(db), ManagerStatusStore(db)
    assert await one.get() is ManagerStatus.PREPARING  # a process that is still starting
    one.local = two.local = None
    with trio.fail_after(TIMEOUT):
        await one.set(ManagerStatus.FROZEN)
        assert await two.get() is ManagerStatus.FROZEN
        await two.set(ManagerStatus.RUNNING)
        assert await one.get() is ManagerStatus.RUNNING
        # A missing row means nobody ever froze the cluster.
        await db.execute("DELETE FROM manager_state")
        assert await one.get() is ManagerStatus.RUNNING
        await one.set(ManagerStatus.FROZEN)
        assert await two.get() is ManagerStatus.FROZEN


gated = Blueprint("test_gated", __name__)


@gated.route("/test/gated", methods=["POST"])
@authenticated
@requires_running
async def gated_view() -> dict[str, str]:
    return {"ok": "yes"}


async def test_requires_running_gate(
    manager_config: Config, db: Database, keypairs: KeypairRepository
) -> None:
    admin = await keypairs.create(NewKeypair("admin@test", is_admin=True))
    creds = Credentials(admin.access_key, admin.secret_key)
    with trio.fail_after(TIMEOUT):
        async with running_manager(manager_config, db, blueprints=(gated,)) as (server, ep):
            client = SigningClient(ep.url, creds)
            try:
                assert (await client.post("/test/gated")).json() == {"ok": "yes"}
                # Authentication comes before the gate.
                assert_problem(await client.post("/test/gated", sign=False), 401, "auth-failed")

                response = await client.put("/manager/status", json={"status": "frozen"})
                assert response.status_code == 204
                assert_problem(await client.post("/test/gated"), 503, "server-frozen")
                assert_problem(await client.post("/test/gated", sign=False), 401, "auth-failed")

                await server.components.status.set(ManagerStatus.PREPARING)
                assert_problem(await client.post("/test/gated"), 503, "service-unavailable")

                response = await client.put("/manager/status", json={"status": "running"})
                assert response.status_code == 204
                assert (await client.post("/test/gated")).status_code == 200
            finally:
                await client.aclose()


async def test_stopping_server_reports_terminated(manager: Harness) -> None:
    manager.server.components.status.local = ManagerStatus.TERMINATED
    with trio.fail_after(TIMEOUT):
        response = await manager.client.get("/manager/status")
    assert response.json()["status"] == "terminated"
    manager.server.components.status.local = None
