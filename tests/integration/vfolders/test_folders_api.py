"""Spec 6 end to end on a real manager, PostgreSQL and the local storage plugin."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from testlib.files import in_pieces
from testlib.server import Harness

from .conftest import MakeUser
from .folder_api import create, download, invite, ls, multipart, names, parts, share, upload

pytestmark = pytest.mark.manager_config({"storage": {"hosts": {"local": {"max_files": 20}}}})


def vfolders_root(manager: Harness) -> Path:
    return Path(manager.config.state_dir) / "vfolders"


async def test_create_list_info_delete(manager: Harness) -> None:
    client = manager.client
    for i, host in enumerate((None, "", [], "local", ["local"])):
        name = f"f{i}"
        response = await create(client, name, host)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == name and body["host"] == "local"
        assert len(body["id"]) == 32
    listed = await client.get("/folders")
    assert listed.status_code == 200
    assert isinstance(listed.json(), list) and len(listed.json()) == 5
    assert all(f["is_owner"] and f["permission"] == "rd" for f in listed.json())
    info = await client.get("/folders/f0")
    assert info.status_code == 200, info.text
    assert {"name", "id", "host", "numFiles", "created", "is_owner", "permission"} <= set(
        info.json()
    )
    assert info.json()["numFiles"] == 0
    folder_dir = vfolders_root(manager) / info.json()["id"]
    assert (folder_dir / "data").is_dir()
    assert (folder_dir / "data").stat().st_uid == 1000
    deleted = await client.request("DELETE", "/folders/f0")
    assert deleted.status_code == 204
    assert not folder_dir.exists()
    assert (await client.get("/folders/f0")).status_code == 404


@pytest.mark.parametrize(
    ("name", "host", "status", "kind"),
    [
        ("bad name", None, 400, "invalid-api-params"),
        ("-x", None, 400, "invalid-api-params"),
        ("x" * 65, None, 400, "invalid-api-params"),
        ("invitations", None, 400, "invalid-api-params"),
        ("create", None, 400, "invalid-api-params"),
        ("ok", "nowhere", 400, "vfolder-creation-failed"),
        ("ok", ["a", "b"], 400, "vfolder-creation-failed"),
        (None, None, 400, "invalid-api-params"),
    ],
)
async def test_create_refusals(
    manager: Harness, name: object, host: object, status: int, kind: str
) -> None:
    response = await manager.client.post("/folders", json={"name": name, "host": host})
    assert response.status_code == status, response.text
    assert response.json()["type"].endswith(kind)


async def test_duplicate_name(manager: Harness) -> None:
    assert (await create(manager.client, "dup")).status_code == 201
    again = await manager.client.post("/folders/create", json={"name": "dup", "host": None})
    assert again.status_code == 400
    assert again.json()["type"].endswith("vfolder-already-exists")


async def test_upload_ls_mkdir_download_delete(manager: Harness) -> None:
    client = manager.client
    assert (await create(client, "data")).status_code == 201
    payload = os.urandom(300_000)
    files = {"a.bin": payload, "sub/dir/b.txt": b"hello", "sp ace%.txt": "é".encode()}
    response = await upload(client, "data", files)
    assert response.status_code == 201, response.text
    assert names(await ls(client, "data")) == ["a.bin", "sp ace%.txt", "sub"]
    assert names(await ls(client, "data", "sub/dir")) == ["b.txt"]
    entry = json.loads((await ls(client, "data", "sub/dir")).json()["files"])[0]
    assert entry["size"] == 5 and entry["mode"].startswith("-rw")
    assert (await ls(client, "data", "nope")).status_code == 404
    made = await client.post("/folders/data/mkdir", json={"path": "x/y/z"})
    assert made.status_code == 201, made.text
    assert (await client.post("/folders/data/mkdir", json={"path": "x/y"})).status_code == 201
    blocked = await client.post("/folders/data/mkdir", json={"path": "a.bin/q"})
    assert blocked.status_code == 400
    got = parts(await download(client, "data", ["a.bin", "sub/dir/b.txt", "sp ace%.txt"]))
    assert got == [("a.bin", payload), ("b.txt", b"hello"), ("sp ace%.txt", "é".encode())]
    assert (await download(client, "data", ["sub"])).status_code == 400
    assert (await download(client, "data", ["missing"])).status_code == 404
    assert (await download(client, "data", [])).status_code == 400
    info = (await client.get("/folders/data")).json()
    assert info["numFiles"] == 8  # 3 files; sub, sub/dir; x, x/y, x/y/z
    assert info["size_bytes"] == len(payload) + 5 + 2

    not_recursive = await client.request(
        "DELETE", "/folders/data/delete_files", json={"files": ["x"], "recursive": False}
    )
    assert not_recursive.status_code == 400
    gone = await client.request(
        "DELETE",
        "/folders/data/delete_files",
        json={"files": ["x", "a.bin", "never-there"], "recursive": True},
    )
    assert gone.status_code == 200, gone.text
    assert names(await ls(client, "data")) == ["sp ace%.txt", "sub"]
    # Uploading over a file replaces it; over a directory is refused.
    assert (await upload(client, "data", {"sub/dir/b.txt": b"v2"})).status_code == 201
    assert parts(await download(client, "data", ["sub/dir/b.txt"])) == [("b.txt", b"v2")]
    assert (await upload(client, "data", {"sub": b"x"})).status_code == 400
    assert (await upload(client, "data", {"sub/dir/b.txt/c": b"x"})).status_code == 400


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "a\x00b", "..", "a/.."])
async def test_paths_escaping_the_folder_are_refused(manager: Harness, path: str) -> None:
    client = manager.client
    assert (await create(client, "esc")).status_code == 201
    for response in (
        await ls(client, "esc", path),
        await client.post("/folders/esc/mkdir", json={"path": path}),
        await download(client, "esc", [path]),
        await upload(client, "esc", {path: b"x"}),
        await client.request(
            "DELETE", "/folders/esc/delete_files", json={"files": [path], "recursive": True}
        ),
    ):
        assert response.status_code in (400, 404), response.text
    # Nothing appeared anywhere near the folders.
    root = vfolders_root(manager)
    assert sorted(p.name for p in root.parent.iterdir() if p.name == "x") == []
    assert [p.name for p in root.iterdir()] == [
        (await manager.client.get("/folders/esc")).json()["id"]
    ]


async def test_size_quota(manager: Harness) -> None:
    client = manager.client
    assert (await create(client, "small")).status_code == 201
    await manager.db.execute("UPDATE vfolders SET max_size = 1000")
    assert (await upload(client, "small", {"a": b"x" * 600})).status_code == 201
    refused = await upload(client, "small", {"b": b"y" * 600})
    assert refused.status_code == 412, refused.text
    assert refused.json()["type"].endswith("quota-exceeded")
    # Nothing half-written: not in the folder, not in the staging area.
    assert names(await ls(client, "small")) == ["a"]
    folder_id = (await client.get("/folders/small")).json()["id"]
    assert list((vfolders_root(manager) / folder_id / "staging").iterdir()) == []
    # Replacing a file only needs room for the difference.
    assert (await upload(client, "small", {"a": b"z" * 900})).status_code == 201
    info = (await client.get("/folders/small")).json()
    assert info["size_bytes"] == 900 and info["max_size_bytes"] == 1000


async def test_file_count_quota(manager: Harness) -> None:
    client = manager.client
    assert (await create(client, "many")).status_code == 201
    files = {f"f{i}": b"." for i in range(20)}
    assert (await upload(client, "many", files)).status_code == 201
    assert (await upload(client, "many", {"one-more": b"."})).status_code == 412
    assert (await client.post("/folders/many/mkdir", json={"path": "d"})).status_code == 412
    assert (await upload(client, "many", {"f1": b"replace"})).status_code == 201


async def test_upload_body_beyond_the_quota_is_refused_early(manager: Harness) -> None:
    client = manager.client
    assert (await create(client, "tiny")).status_code == 201
    await manager.db.execute("UPDATE vfolders SET max_size = 10")
    body = b"0" * (17 * 1024 * 1024)
    response = await client.post(
        "/folders/tiny/upload", content=body, content_type="multipart/form-data; boundary=zz"
    )
    assert response.status_code == 413


async def test_a_body_read_in_two_inside_its_closing_delimiter(manager: Harness) -> None:
    """The read boundary right between the closing ``--`` once made the delimiter's CR
    the last byte of the last file (werkzeug's decoder, pallets/werkzeug#3285)."""
    client = manager.client
    assert (await create(client, "split")).status_code == 201
    body, content_type = multipart({"a.txt": b"first", "b.txt": b"last"})
    with trio.fail_after(30):
        response = await client.post(
            "/folders/split/upload",
            content=in_pieces(body, [len(body) - 3]),
            content_type=content_type,
        )
    assert response.status_code == 201, response.text
    assert parts(await download(client, "split", ["a.txt", "b.txt"])) == [
        ("a.txt", b"first"),
        ("b.txt", b"last"),
    ]


async def test_invitations(manager: Harness, make_user: MakeUser) -> None:
    owner = manager.client
    bob = await make_user("bob@test")
    bob2 = await make_user("bob@test")  # a second keypair of the same user
    assert (await create(owner, "team")).status_code == 201
    assert (await invite(owner, "team", [], "rw")).status_code == 400
    assert (await invite(owner, "team", ["bob@test"], "xx")).status_code == 400
    invited = await invite(owner, "team", ["bob@test", "bob@test", "nobody@test", "user@test"])
    assert invited.json() == {"invited_ids": ["bob@test"]}
    # Already pending: not invited twice.
    assert (await invite(owner, "team", ["bob@test"])).json() == {"invited_ids": []}
    assert (await invite(bob, "team", ["bob@test"])).status_code == 404
    listed = (await bob2.get("/folders/invitations/list")).json()["invitations"]
    assert len(listed) == 1
    inv = listed[0]
    assert inv["perm"] == inv["permission"] == "rw" and inv["inviter"] == "user@test"
    assert inv["state"] == "pending" and len(inv["vfolder_id"]) == 32
    assert (await owner.get("/folders/invitations/list")).json() == {"invitations": []}
    # Accepting for somebody else's access key is refused.
    assert manager.client.creds is not None and bob2.creds is not None
    wrong = await bob.post(
        "/folders/invitations/accept",
        json={"inv_id": inv["id"], "inv_ak": manager.client.creds.access_key},
    )
    assert wrong.status_code == 400
    # bob2 already owns a folder called "team": the accept is refused.
    assert (await create(bob2, "team")).status_code == 201
    clash = await bob.post(
        "/folders/invitations/accept", json={"inv_id": inv["id"], "inv_ak": bob2.creds.access_key}
    )
    assert clash.status_code == 400 and clash.json()["type"].endswith("vfolder-already-exists")
    assert bob.creds is not None
    ok = await bob2.post(
        "/folders/invitations/accept", json={"inv_id": inv["id"], "inv_ak": bob.creds.access_key}
    )
    assert ok.status_code == 200 and "msg" in ok.json()
    shared = [f for f in (await bob.get("/folders")).json() if f["name"] == "team"]
    assert shared == [{**shared[0], "is_owner": False, "permission": "rw"}]
    again = await bob.post(
        "/folders/invitations/accept", json={"inv_id": inv["id"], "inv_ak": bob.creds.access_key}
    )
    assert again.status_code == 404
    # Reject: a new invitation, then rejected; rejecting twice is a 404.
    assert (await create(owner, "other")).status_code == 201
    assert (await invite(owner, "other", ["bob@test"], "wd")).json()["invited_ids"] == ["bob@test"]
    (pending,) = (await bob.get("/folders/invitations/list")).json()["invitations"]
    assert pending["perm"] == "rd"
    rejected = await bob.request(
        "DELETE", "/folders/invitations/delete", json={"inv_id": pending["id"]}
    )
    assert rejected.status_code == 200 and "msg" in rejected.json()
    twice = await bob.request(
        "DELETE", "/folders/invitations/delete", json={"inv_id": pending["id"]}
    )
    assert twice.status_code == 404
    assert (await bob.get("/folders/other")).status_code == 404


# Spec 6.1: what each grant may do; "owner" only for delete and invite.
NEEDS = {
    "info": "ro",
    "files": "ro",
    "download": "ro",
    "mkdir": "rw",
    "upload": "rw",
    "delete_files": "rd",
    "invite": "owner",
    "delete": "owner",
}
LEVELS = {None: 0, "ro": 1, "rw": 2, "rd": 3, "owner": 4}


@pytest.mark.parametrize("perm", ["ro", "rw", "rd", None])
async def test_permission_matrix(manager: Harness, make_user: MakeUser, perm: str | None) -> None:
    owner = manager.client
    guest = await make_user("guest@test")
    assert (await create(owner, "box")).status_code == 201
    assert (await upload(owner, "box", {"f.txt": b"data", "d/g.txt": b"g"})).status_code == 201
    if perm is not None:
        await share(owner, guest, "guest@test", "box", perm)

    async def call(endpoint: str) -> int:
        if endpoint == "info":
            return (await guest.get("/folders/box")).status_code
        if endpoint == "files":
            return (await ls(guest, "box")).status_code
        if endpoint == "download":
            return (await download(guest, "box", ["f.txt"])).status_code
        if endpoint == "mkdir":
            return (await guest.post("/folders/box/mkdir", json={"path": "new"})).status_code
        if endpoint == "upload":
            return (await upload(guest, "box", {"up.txt": b"u"})).status_code
        if endpoint == "delete_files":
            return (
                await guest.request(
                    "DELETE", "/folders/box/delete_files", json={"files": ["d"], "recursive": True}
                )
            ).status_code
        if endpoint == "invite":
            return (await invite(guest, "box", ["user@test"])).status_code
        return (await guest.request("DELETE", "/folders/box")).status_code

    for endpoint, need in NEEDS.items():
        status = await call(endpoint)
        if LEVELS[perm] >= LEVELS[need]:
            assert 200 <= status < 300, (endpoint, perm, status)
        else:
            assert status == 404, (endpoint, perm, status)
    listed = [f["name"] for f in (await guest.get("/folders")).json()]
    assert listed == ([] if perm is None else ["box"])
    # The owner's view is unchanged whatever the guest could not do.
    assert (await owner.get("/folders/box")).status_code == 200


async def test_frozen_manager_refuses_mutations(manager: Harness) -> None:
    client = manager.client
    assert (await create(client, "cold")).status_code == 201
    await manager.db.execute("UPDATE manager_state SET value = 'frozen' WHERE key = 'status'")
    with trio.fail_after(10):
        while (await create(client, "cold2")).status_code != 503:
            await trio.sleep(0.2)
    assert (await client.request("DELETE", "/folders/cold")).status_code == 503
    assert (await client.get("/folders/cold")).status_code == 200
    assert (await upload(client, "cold", {"a": b"x"})).status_code == 201
