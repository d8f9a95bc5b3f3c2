"""Issue 9, finding 5: no request body fans out without bound. An invitation to 10,000
user ids took 8.7 s in one request; lists of files had no cap at all. Each is refused
before any of its entries is looked at, with a detail naming the limit."""

from __future__ import annotations

import pytest
import trio

from testlib.problems import assert_problem
from testlib.server import Harness

from .conftest import MakeUser
from .folder_api import create, download, invite, multipart, names, upload

#: Far less than the 8.7 s the unbounded invitation took.
QUICK = 3.0


async def test_ten_thousand_invitees_are_refused_quickly(manager: Harness) -> None:
    client = manager.client
    assert (await create(client, "team")).status_code == 201
    user_ids = [f"user{i}@test" for i in range(10_000)]
    with trio.fail_after(QUICK):
        response = await invite(client, "team", user_ids)
    problem = assert_problem(response, 400, "invalid-api-params")
    assert "64" in problem["detail"] and "limits.max_invitees" in problem["detail"]
    assert await manager.db.fetchval("SELECT count(*) FROM vfolder_invitations") == 0


async def test_invitees_up_to_the_limit_are_served(
    manager: Harness, make_user: MakeUser
) -> None:
    client = manager.client
    await make_user("bob@test")
    assert (await create(client, "team")).status_code == 201
    user_ids = ["bob@test"] + [f"nobody{i}@test" for i in range(63)]
    with trio.fail_after(QUICK):
        response = await invite(client, "team", user_ids)
    assert response.status_code == 200, response.text
    assert response.json()["invited_ids"] == ["bob@test"]


@pytest.mark.parametrize(
    "user_ids",
    [["a\x00b"], [""], ["x" * 257], [7], "bob@test", []],
    ids=["nul", "empty", "long", "number", "string", "none"],
)
async def test_malformed_invitees_are_400(manager: Harness, user_ids: object) -> None:
    client = manager.client
    assert (await create(client, "team")).status_code == 201
    response = await client.post(
        "/folders/team/invite", json={"perm": "ro", "user_ids": user_ids}
    )
    assert_problem(response, 400, "invalid-api-params")


async def test_file_lists_are_capped(manager: Harness) -> None:
    client = manager.client
    assert (await create(client, "data")).status_code == 201
    assert (await upload(client, "data", {"a.txt": b"a"})).status_code == 201
    many = ["a.txt"] * 10_000
    with trio.fail_after(QUICK):
        for response in (
            await download(client, "data", many),
            await client.request("DELETE", "/folders/data/delete_files", json={"files": many}),
        ):
            problem = assert_problem(response, 400, "invalid-api-params")
            assert "limits.max_folder_files" in problem["detail"]
    # Nothing was deleted; the limit itself is fine.
    assert names(await client.get("/folders/data/files", json={"path": "."})) == ["a.txt"]
    assert (await download(client, "data", ["a.txt"] * 100)).status_code == 200


@pytest.mark.manager_config({"limits": {"max_folder_files": 3}})
async def test_upload_file_count_is_capped(manager: Harness) -> None:
    client = manager.client
    assert (await create(client, "data")).status_code == 201
    assert (await upload(client, "data", {f"f{i}": b"x" for i in range(3)})).status_code == 201
    body, content_type = multipart({f"g{i}": b"x" for i in range(4)})
    with trio.fail_after(QUICK):
        response = await client.post(
            "/folders/data/upload", content=body, content_type=content_type
        )
    problem = assert_problem(response, 400, "invalid-api-params")
    assert "limits.max_folder_files" in problem["detail"]
