"""Folders mounted into real sessions (spec 4.2 mounts) on the real Docker engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import trio
from sessions.conftest import cold_and_pooled

from testlib.sessions import Cluster, create, execute, new_token, stream_text

from .folder_api import download, ls, names, parts, share, upload

#: Every test runs on a cold kernel and on one claimed from the warm pool: the
#: protections must hold the same for both (docs/security.md).
kernel_start, pooled_kernels_claimed = cold_and_pooled()


def folder_data(cluster: Cluster, folder_id: str) -> Path:
    return Path(cluster.config.state_dir) / "vfolders" / folder_id / "data"


async def make_folder(cluster: Cluster, name: str) -> str:
    response = await cluster.client.post("/folders", json={"name": name, "host": []})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_mount_read_write_and_alias(cluster: Cluster) -> None:
    client = cluster.client
    folder_id = await make_folder(cluster, "work")
    assert (await upload(client, "work", {"in/hello.txt": b"from the API"})).status_code == 201
    token = new_token()
    created = await create(client, token, mounts=["work", "work:alias"])
    assert created.status_code == 201, created.text
    code = (
        "import os\n"
        "print(open('/home/work/work/in/hello.txt').read())\n"
        "os.makedirs('/home/work/alias/out', exist_ok=True)\n"
        "open('/home/work/alias/out/result.txt', 'w').write('from the session')\n"
        "print(sorted(os.listdir('/home/work')))\n"
    )
    out = stream_text(await execute(client, token, code))
    assert "from the API" in out
    assert "'alias'" in out and "'work'" in out
    # The session's files are in the folder, readable and deletable through the API.
    assert parts(await download(client, "work", ["out/result.txt"])) == [
        ("result.txt", b"from the session")
    ]
    written = folder_data(cluster, folder_id) / "out" / "result.txt"
    assert written.stat().st_uid == 1000
    # Deleting a folder a live session mounts is refused, with the sessions named.
    refused = await client.request("DELETE", "/folders/work")
    assert refused.status_code == 409, refused.text
    assert refused.json()["data"] == {"sessions": [token]}
    assert (await client.request("DELETE", f"/kernel/{token}")).status_code == 200
    gone = await client.request(
        "DELETE", "/folders/work/delete_files", json={"files": ["out"], "recursive": True}
    )
    assert gone.status_code == 200
    assert not written.exists()
    assert (await client.request("DELETE", "/folders/work")).status_code == 204


async def test_read_only_grant_mounts_read_only(cluster: Cluster) -> None:
    owner = cluster.harness.as_admin()
    guest = cluster.client  # user@test
    await make_folder(cluster, "unused")  # the guest's own folder
    response = await owner.post("/folders", json={"name": "lib", "host": None})
    assert response.status_code == 201
    assert (await upload(owner, "lib", {"data.txt": b"shared"})).status_code == 201
    await share(owner, guest, "user@test", "lib", "ro")
    token = new_token()
    assert (await create(guest, token, mounts=["lib"])).status_code == 201
    code = (
        "print(open('/home/work/lib/data.txt').read())\n"
        "try:\n"
        "    open('/home/work/lib/new.txt', 'w')\n"
        "except OSError as e:\n"
        "    print('refused', e.errno)\n"
    )
    out = stream_text(await execute(guest, token, code))
    assert "shared" in out and "refused 30" in out  # EROFS
    assert names(await ls(owner, "lib")) == ["data.txt"]


async def test_unknown_or_foreign_folder_is_404_before_anything_starts(cluster: Cluster) -> None:
    owner = cluster.harness.as_admin()
    assert (await owner.post("/folders", json={"name": "private"})).status_code == 201
    for mounts in (["nope"], ["private"]):
        token = new_token()
        response = await create(cluster.client, token, mounts=mounts)
        assert response.status_code == 404, response.text
        assert response.json()["type"].endswith("vfolder-not-found")
        count = await cluster.harness.db.fetchval(
            "SELECT count(*) FROM kernels WHERE sess_id = $1", token
        )
        assert count == 0
    for bad in (["a", "b", "c", "d", "e", "f"], ["x:../up"], ["x:a/b"], "notalist"):
        response = await create(cluster.client, new_token(), mounts=bad)
        assert response.status_code == 400, (bad, response.text)


async def test_symlinks_planted_by_a_session_are_never_followed(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A session plants links to / and to another tenant's folder; the API (root on
    the host) must neither read, write nor delete through them."""
    client = cluster.client
    victim = cluster.harness.as_admin()
    victim_resp = await victim.post("/folders", json={"name": "victim"})
    victim_id = victim_resp.json()["id"]
    assert (await upload(victim, "victim", {"secret.txt": b"top secret"})).status_code == 201
    folder_id = await make_folder(cluster, "evil")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    os.chmod(tmp_path, 0o755)
    victim_dir = folder_data(cluster, victim_id)
    token = new_token()
    assert (await create(client, token, mounts=["evil"])).status_code == 201
    code = (
        "import os\n"
        "d = '/home/work/evil'\n"
        f"os.symlink({str(outside)!r}, d + '/out')\n"
        f"os.symlink({str(outside / 'keep.txt')!r}, d + '/keep')\n"
        f"os.symlink({str(victim_dir)!r}, d + '/victim')\n"
        f"os.symlink({str(victim_dir / 'secret.txt')!r}, d + '/secret')\n"
        "os.symlink('/etc', d + '/etc')\n"
        "os.mkfifo(d + '/fifo')\n"
        "print('planted')\n"
    )
    assert "planted" in stream_text(await execute(client, token, code))
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    with trio.fail_after(30):
        # Reading through the links: refused, never the target's content.
        for path in ("keep", "secret", "fifo", "etc/passwd", "victim/secret.txt"):
            response = await download(client, "evil", [path])
            assert response.status_code in (400, 404), (path, response.text)
            assert b"top secret" not in response.content and b"root:" not in response.content
        for path in ("out", "victim", "etc"):
            assert (await ls(client, "evil", path)).status_code == 400
        # Writing through them: refused; nothing appears outside.
        for path in ("out/new.txt", "victim/new.txt", "etc/evil", "keep", "secret"):
            response = await upload(client, "evil", {path: b"pwned"})
            assert response.status_code == 400, (path, response.text)
        assert (
            await client.post("/folders/evil/mkdir", json={"path": "out/sub"})
        ).status_code == 400
        # Deleting the links deletes the links, not their targets.
        response = await client.request(
            "DELETE",
            "/folders/evil/delete_files",
            json={"files": ["out", "keep", "victim", "secret", "etc", "fifo"], "recursive": True},
        )
        assert response.status_code == 200, response.text
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
    assert (victim_dir / "secret.txt").read_bytes() == b"top secret"
    assert not (victim_dir / "new.txt").exists()
    assert names(await ls(client, "evil")) == []
    listing = json.loads((await ls(victim, "victim")).json()["files"])
    assert [e["filename"] for e in listing] == ["secret.txt"]
    # The whole folder's deletion (after the session) does not follow links either.
    code = f"import os; os.symlink({str(outside)!r}, '/home/work/evil/again')"
    await execute(client, token, code)
    assert (await client.request("DELETE", f"/kernel/{token}")).status_code == 200
    assert (await client.request("DELETE", "/folders/evil")).status_code == 204
    assert not folder_data(cluster, folder_id).exists()
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
