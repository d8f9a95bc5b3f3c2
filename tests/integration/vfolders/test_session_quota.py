"""A session that writes past its folder's cap is stopped by the filesystem (issue 9,
finding 4): the storage host is a btrfs image with quotas, loop-mounted by the test.

Before the fix, the session wrote as much as the disk held and only the next API upload
was refused.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from testlib.loopfs import MiB, btrfs_with_quotas
from testlib.sessions import Cluster, create, execute, new_token, stream_text

from .folder_api import upload

CAP = 64 * MiB


@pytest.fixture
def short_state_dir() -> Iterator[Path]:
    """The cluster's state directory, its ``vfolders`` (the default ``local`` host) a
    btrfs filesystem with quotas. Large enough to hold what the session tries to write,
    so without enforcement the writes would succeed."""
    path = Path(tempfile.mkdtemp(prefix="crs-", dir="/tmp"))
    try:
        with btrfs_with_quotas(path / "vfolders", size_bytes=1024 * MiB):
            yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# Every way a session might get past the cap: dd, buffered Python writes, fallocate, and
# the two ioctls that would move data out of the folder's accounting (a nested subvolume;
# a changed project id), which the seccomp filter must refuse.
FILL = r"""
import errno, fcntl, os, subprocess
d = "/home/work/box"
out = {}

def attempt(name, step):
    try:
        step()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]

def fallocate():
    fd = os.open(d + "/fa.bin", os.O_WRONLY | os.O_CREAT)
    try:
        os.posix_fallocate(fd, 0, 100 << 20)
    finally:
        os.close(fd)

def python_writes():
    with open(d + "/py.bin", "wb") as f:
        for _ in range(100):
            f.write(b"x" * (1 << 20))
            f.flush()

def ioctl(request):
    def step():
        dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            args = bytearray(4096)
            args[8:13] = b"inner"
            fcntl.ioctl(dirfd, request, args)
        finally:
            os.close(dirfd)
    return step

attempt("fallocate", fallocate)
p = subprocess.run(["dd", "if=/dev/zero", f"of={d}/dd.bin", "bs=1M", "count=100"],
                   capture_output=True, text=True)
out["dd"] = (p.returncode, "Disk quota exceeded" in p.stderr)
attempt("python", python_writes)
attempt("subvolume", ioctl(0x5000940E))  # BTRFS_IOC_SUBVOL_CREATE
attempt("setxattr", ioctl(0x401C5820))  # FS_IOC_FSSETXATTR
print(repr(out))
"""


@pytest.mark.manager_config({"storage": {"hosts": {"local": {"max_size_bytes": CAP}}}})
async def test_session_writes_stop_at_the_folder_cap(cluster: Cluster) -> None:
    client = cluster.client
    created = await client.post("/folders", json={"name": "box", "host": []})
    assert created.status_code == 201, created.text
    folder_dir = Path(cluster.config.state_dir) / "vfolders" / created.json()["id"]
    token = new_token()
    started = await create(client, token, mounts=["box"])
    assert started.status_code == 201, started.text

    with trio.fail_after(120):
        results_raw = await execute(client, token, FILL)
    out = stream_text(results_raw)
    assert out.strip(), stream_text(results_raw, "stderr")
    results = ast.literal_eval(out.strip().splitlines()[-1])
    assert results["dd"][0] != 0 and results["dd"][1], results  # dd: Disk quota exceeded
    assert results["python"] in ("EDQUOT", "ENOSPC"), results
    assert results["fallocate"] in ("EDQUOT", "ENOSPC"), results
    assert results["subvolume"] == "EPERM", results
    assert results["setxattr"] == "EPERM", results

    info = (await client.get("/folders/box")).json()
    # At most the cap (btrfs counts its own metadata too, so a little less is written).
    assert CAP // 2 < info["size_bytes"] <= CAP, info
    assert info["quota_enforced"]["size"] == "filesystem", info
    assert info["quota_enforced"]["files"] == "api", info
    assert "file count is not enforced in sessions" in info["quota_enforced"]["detail"]
    assert "btrfs" in info["quota_enforced"]["detail"]

    # The session and the manager both keep working.
    assert "42" in stream_text(await execute(client, token, "print(6*7)"))
    refused = await upload(client, "box", {"late.bin": b"z" * MiB})
    assert refused.status_code == 412, refused.text
    freed = "import os; os.remove('/home/work/box/dd.bin'); print('freed')"
    assert "freed" in stream_text(await execute(client, token, freed))
    assert (await upload(client, "box", {"late.bin": b"z" * MiB})).status_code == 201
    assert (await client.get("/folders")).status_code == 200

    assert (await client.request("DELETE", f"/kernel/{token}")).status_code == 200
    assert (await client.request("DELETE", "/folders/box")).status_code == 204
    assert not folder_dir.exists()
