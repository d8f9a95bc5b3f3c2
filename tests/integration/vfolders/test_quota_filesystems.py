"""The `local` plugin's caps on real filesystems, each on a loop-mounted image the test
makes (and takes down, also after a failure).

btrfs runs wherever btrfs and loop devices exist (CI included); the XFS and ext4
project-quota tests need a kernel with quota support and are skipped, with the kernel's
own words, where it has none.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from crucible.db.pool import Database
from crucible.hookspecs.storage import (
    BY_API,
    BY_FILESYSTEM,
    FolderLimits,
    HostSettings,
    StorageFull,
)
from crucible.plugin_manager import load_storage_backends
from crucible.plugins.storage import btrfs, project_quota
from crucible.plugins.storage.folder_quotas import PROJECT_ID_BASE
from crucible.plugins.storage.local import LocalHost
from testlib.loopfs import MiB, btrfs_quota_on, btrfs_with_quotas, loop_filesystem
from testlib.server import make_config, open_harness

from .folder_api import create

#: The kernel user of sessions; the writer below runs as it, like a session.
KERNEL_UID = 1000
WRITER_TIMEOUT = 120

# Runs as uid 1000 with a descriptor of the folder's data directory (it cannot walk the
# 0700 root, just as a session only sees its bind mount).
WRITER = r"""
import errno, os, sys
what, count, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
done = 0
try:
    if what == "bytes":
        fd = os.open("big", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=data)
        chunk = b"x" * (1 << 20)
        while done < count:
            done += os.write(fd, chunk[: count - done])
        os.fsync(fd)
    else:
        for i in range(count):
            os.close(os.open(f"f{i}", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=data))
            done += 1
    print("ok", done)
except OSError as exc:
    print(errno.errorcode[exc.errno], done)
"""


def write_as_kernel_user(host: LocalHost, folder_id: str, what: str, count: int) -> tuple[str, int]:
    """Write `count` bytes (one file) or `count` empty files into the folder as uid 1000;
    returns how it ended (``ok`` or the errno name) and how much was written."""
    data = os.open(host.root / folder_id / "data", os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = subprocess.run(
            ["/usr/bin/python3", "-c", WRITER, what, str(count), str(data)],
            user=KERNEL_UID,
            group=KERNEL_UID,
            extra_groups=[],
            pass_fds=(data,),
            capture_output=True,
            text=True,
            timeout=WRITER_TIMEOUT,
        )
    finally:
        os.close(data)
    assert result.returncode == 0, result.stderr
    outcome, done = result.stdout.split()
    return outcome, int(done)


def open_host(root: Path) -> LocalHost:
    backend = load_storage_backends()["local"]
    host = backend.open_host(HostSettings("q", "local", str(root), {}, str(root.parent)))
    assert isinstance(host, LocalHost)
    return host


async def chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // MiB):
        yield b"y" * MiB


def subvolumes(mount_point: Path) -> str:
    listed = subprocess.run(
        ["btrfs", "subvolume", "list", str(mount_point)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return listed.stdout


@pytest.fixture
def btrfs_root(tmp_path: Path) -> Iterator[Path]:
    with btrfs_with_quotas(tmp_path / "mnt") as mounted:
        # A root below the filesystem's top, as a sysadmin would configure it.
        yield mounted / "vfolders"


async def test_btrfs_caps_the_size_of_every_writer(btrfs_root: Path) -> None:
    host = open_host(btrfs_root)
    assert (host.quota_enforcement.size, host.quota_enforcement.files) == (BY_FILESYSTEM, BY_API)
    fid = uuid.uuid4().hex
    await host.create_folder(fid)
    assert (btrfs_root / fid).stat().st_ino == btrfs.BTRFS_FIRST_FREE_OBJECTID  # a subvolume
    assert oct((btrfs_root / fid).stat().st_mode & 0o777) == "0o700"
    held = await host.limit_folder(fid, FolderLimits(max_size_bytes=16 * MiB, max_files=10))
    assert held.size == BY_FILESYSTEM and held.files == BY_API
    assert (await host.folder_enforcement(fid)).size == BY_FILESYSTEM

    outcome, written = write_as_kernel_user(host, fid, "bytes", 64 * MiB)
    assert outcome == "EDQUOT", (outcome, written)
    assert 8 * MiB < written <= 16 * MiB
    usage = await host.usage(fid)
    assert usage.size_bytes <= 16 * MiB and usage.file_count == 1
    # The API's own writes hit the same wall: StorageFull, and nothing is left behind.
    with pytest.raises(StorageFull):
        await host.upload_file(fid, ("more.bin",), chunks(16 * MiB))
    assert await host.stat(fid, ("more.bin",)) is None
    assert list((btrfs_root / fid / "staging").iterdir()) == []
    # Deleting frees the space: the folder is usable again.
    await host.delete_files(fid, [("big",)], recursive=False)
    assert await host.upload_file(fid, ("again.bin",), chunks(4 * MiB)) == 4 * MiB

    await host.delete_folder(fid)
    assert not (btrfs_root / fid).exists()
    assert fid not in subvolumes(btrfs_root.parent)


async def test_btrfs_folders_made_before_keep_working(btrfs_root: Path) -> None:
    """A folder that is a plain directory (made by an older version) reports that its
    caps are the API's; one holding a nested subvolume (made where seccomp did not stop
    it) is still deleted whole."""
    host = open_host(btrfs_root)
    legacy = uuid.uuid4().hex
    for part in ("", "data", "staging"):
        (btrfs_root / legacy / part).mkdir(mode=0o700)
    enforcement = await host.limit_folder(legacy, FolderLimits(MiB, 10))
    assert enforcement.size == BY_API and "before this host used subvolumes" in enforcement.reason
    assert (await host.folder_enforcement(legacy)).size == BY_API
    assert await host.upload_file(legacy, ("a.txt",), chunks(MiB)) == MiB
    await host.delete_folder(legacy)
    assert not (btrfs_root / legacy).exists()

    nested = uuid.uuid4().hex
    await host.create_folder(nested)
    btrfs.create_subvolume(os.open(btrfs_root / nested / "data", os.O_RDONLY), "inner")
    (btrfs_root / nested / "data" / "inner" / "x").write_bytes(b"x")
    await host.delete_folder(nested)
    assert not (btrfs_root / nested).exists()
    assert "inner" not in subvolumes(btrfs_root.parent)


# Filesystems come from sync fixtures: pytest-trio drops the reason of a skip raised in
# an async test, and the reason (the kernel's words) is the point of these skips.


@pytest.fixture
def btrfs_quotas_off(tmp_path: Path) -> Iterator[Path]:
    with loop_filesystem(tmp_path / "mnt", ["mkfs.btrfs", "-q", "-f"], size_bytes=256 * MiB) as mnt:
        yield mnt


async def test_btrfs_quotas_switched_on_later(btrfs_quotas_off: Path) -> None:
    mnt = btrfs_quotas_off
    host = open_host(mnt / "vfolders")
    assert host.quota_enforcement.size == BY_API
    assert "btrfs quota enable" in host.quota_enforcement.reason
    fid = uuid.uuid4().hex
    await host.create_folder(fid)
    assert (await host.limit_folder(fid, FolderLimits(8 * MiB, 10))).size == BY_API
    btrfs_quota_on(mnt)
    # The next start: the host sees quotas on, and the core hands the caps again.
    host = open_host(mnt / "vfolders")
    assert (await host.limit_folder(fid, FolderLimits(8 * MiB, 10))).size == BY_FILESYSTEM
    outcome, written = write_as_kernel_user(host, fid, "bytes", 32 * MiB)
    assert outcome == "EDQUOT" and written <= 8 * MiB
    await host.delete_folder(fid)


PROJECT_FILESYSTEMS = {
    # XFS refuses images under 300 MiB.
    "xfs": (["mkfs.xfs", "-q", "-f"], 320 * MiB),
    "ext4": (["mkfs.ext4", "-q", "-F", "-O", "quota,project", "-I", "256"], 128 * MiB),
}


@pytest.fixture(params=sorted(PROJECT_FILESYSTEMS))
def project_quota_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    mkfs, size = PROJECT_FILESYSTEMS[request.param]
    with loop_filesystem(tmp_path / "mnt", mkfs, size_bytes=size, mount_options="prjquota") as mnt:
        yield request.param, mnt


@pytest.fixture
def xfs_plain(tmp_path: Path) -> Iterator[Path]:
    with loop_filesystem(tmp_path / "mnt", ["mkfs.xfs", "-q", "-f"], size_bytes=320 * MiB) as mnt:
        yield mnt


async def test_project_quota_caps_size_and_files(project_quota_fs: tuple[str, Path]) -> None:
    fs, mnt = project_quota_fs
    root = mnt / "vfolders"
    host = open_host(root)
    assert host.quota_enforcement.in_sessions, host.quota_enforcement.reason
    fid = uuid.uuid4().hex
    await host.create_folder(fid)
    limits = FolderLimits(max_size_bytes=8 * MiB, max_files=20)
    assert (await host.limit_folder(fid, limits)).in_sessions
    assert (await host.folder_enforcement(fid)).in_sessions
    assert (await host.usage(fid)).file_count == 0

    outcome, written = write_as_kernel_user(host, fid, "bytes", 64 * MiB)
    assert outcome in ("EDQUOT", "ENOSPC"), (outcome, written)
    assert written <= 8 * MiB
    usage = await host.usage(fid)
    assert usage.size_bytes <= 8 * MiB and usage.file_count == 1
    if fs == "xfs":
        # XFS holds root to the limit as well; ext4 lets CAP_SYS_RESOURCE past it, so
        # there the API's writes rely on its own checks (which run first anyway).
        with pytest.raises(StorageFull):
            await host.upload_file(fid, ("more.bin",), chunks(8 * MiB))
    await host.delete_files(fid, [("big",)], recursive=False)

    outcome, made = write_as_kernel_user(host, fid, "files", 100)
    assert outcome in ("EDQUOT", "ENOSPC"), (outcome, made)  # XFS: ENOSPC
    # The cap, plus the one inode an API upload may hold for a moment.
    assert limits.max_files <= made <= limits.max_files + 1
    assert (await host.usage(fid)).file_count == made

    folder_fd = os.open(root / fid, os.O_RDONLY | os.O_DIRECTORY)
    try:
        project_id, inherits = project_quota.get_project(folder_fd)
    finally:
        os.close(folder_fd)
    assert inherits and project_id >= PROJECT_ID_BASE
    await host.delete_folder(fid)
    assert not (root / fid).exists()
    # The project's limits are cleared: its id is free for another folder.
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not project_quota.get_quota(root_fd, project_id).in_use
    finally:
        os.close(root_fd)


async def test_xfs_without_prjquota_says_what_to_change(xfs_plain: Path) -> None:
    mnt = xfs_plain
    host = open_host(mnt / "vfolders")
    enforcement = host.quota_enforcement
    assert (enforcement.size, enforcement.files) == (BY_API, BY_API)
    assert "is on XFS" in enforcement.reason
    # Either this kernel has no XFS quotas at all, or they are just not mounted.
    assert (
        "built without XFS quota support" in enforcement.reason
        or "-o prjquota" in enforcement.reason
    ), enforcement.reason
    fid = uuid.uuid4().hex
    await host.create_folder(fid)
    outcome, _ = write_as_kernel_user(host, fid, "bytes", 4 * MiB)
    assert outcome == "ok"
    assert (await host.usage(fid)).size_bytes == 4 * MiB
    await host.delete_folder(fid)
    assert not (mnt / "vfolders" / fid).exists()


async def test_a_restart_applies_caps_to_folders_made_while_quotas_were_off(
    btrfs_quotas_off: Path, pg_dsn: str, db: Database, tmp_path: Path
) -> None:
    host = {"path": str(btrfs_quotas_off / "vfolders"), "max_size_bytes": 8 * MiB}
    config = make_config(pg_dsn, tmp_path / "state", {"storage": {"hosts": {"local": host}}})
    async with open_harness(config, db) as harness:
        assert (await create(harness.client, "early")).status_code == 201
        info = (await harness.client.get("/folders/early")).json()
        assert info["quota_enforced"]["size"] == "api"
        assert "btrfs quota enable" in info["quota_enforced"]["detail"]
        owner = harness.user
    btrfs_quota_on(btrfs_quotas_off)
    async with open_harness(config, db) as harness:
        client = harness.client.with_credentials(owner)
        with trio.fail_after(10):
            # The new manager hands every folder's caps to its host in the background.
            while True:
                info = (await client.get("/folders/early")).json()
                if info["quota_enforced"]["size"] == "filesystem":
                    break
                await trio.sleep(0.05)
