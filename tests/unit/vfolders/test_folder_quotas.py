"""What the `local` plugin decides a filesystem can enforce, and how it says so."""

from __future__ import annotations

import ctypes
import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crucible import errors
from crucible.agent import sandbox
from crucible.hookspecs.storage import (
    BY_API,
    BY_FILESYSTEM,
    EntryNotFound,
    FolderLimits,
    HostSettings,
    QuotaEnforcement,
    StorageFull,
    Usage,
)
from crucible.plugin_manager import load_storage_backends
from crucible.plugins.storage import btrfs, folder_quotas, project_quota
from crucible.plugins.storage.folder_quotas import (
    BtrfsFolders,
    PlainFolders,
    Probe,
    ProjectQuotaFolders,
    decide,
    detect,
)
from crucible.plugins.storage.linux_abi import StatFs
from crucible.plugins.storage.local import LocalHost
from crucible.vfolders.problems import storage_problem
from testlib.loopfs import tmpfs_directory

ROOT = Path("/srv/vfolders")
XFS = project_quota.XFS_SUPER_MAGIC
EXT4 = project_quota.EXT4_SUPER_MAGIC
BTRFS = btrfs.BTRFS_SUPER_MAGIC
TMPFS = 0x01021994
ENFORCED = project_quota.FS_QUOTA_PDQ_ACCT | project_quota.FS_QUOTA_PDQ_ENFD


@pytest.mark.parametrize("magic", [XFS, EXT4])
def test_project_quotas_that_are_enforced_hold_both_caps(magic: int) -> None:
    folders = decide(ROOT, Probe(magic, is_root=True, project_flags=ENFORCED))
    assert isinstance(folders, ProjectQuotaFolders)
    assert (folders.enforcement.size, folders.enforcement.files) == (BY_FILESYSTEM, BY_FILESYSTEM)
    assert folders.enforcement.in_sessions
    assert "project quotas" in folders.enforcement.reason


@pytest.mark.parametrize(
    ("magic", "flags", "expected"),
    [
        (XFS, OSError(errno.ENOSYS, "Function not implemented"), "built without XFS quota"),
        (EXT4, OSError(errno.ENOSYS, "Function not implemented"), "built without ext4 quota"),
        (XFS, OSError(errno.ESRCH, "No such process"), "mount it with -o prjquota"),
        (EXT4, OSError(errno.ENOENT, "No such file"), "mkfs.ext4 -O quota,project"),
        (XFS, project_quota.FS_QUOTA_PDQ_ACCT, "accounted but not enforced"),
        (XFS, 0, "project quotas are off"),
    ],
)
def test_project_quotas_off_leave_both_caps_to_the_api(
    magic: int, flags: int | OSError, expected: str
) -> None:
    folders = decide(ROOT, Probe(magic, is_root=True, project_flags=flags))
    assert type(folders) is PlainFolders
    assert (folders.enforcement.size, folders.enforcement.files) == (BY_API, BY_API)
    assert expected in folders.enforcement.reason
    assert str(ROOT) in folders.enforcement.reason


def test_btrfs_with_quotas_holds_the_size_only() -> None:
    folders = decide(ROOT, Probe(BTRFS, is_root=True, btrfs_quota="qgroup"))
    assert isinstance(folders, BtrfsFolders)
    assert (folders.enforcement.size, folders.enforcement.files) == (BY_FILESYSTEM, BY_API)
    assert "cannot limit a number of files" in folders.enforcement.reason
    summary = folders.enforcement.summary()
    assert summary.startswith("size is enforced by the filesystem, in sessions too; file count")
    assert "not enforced in sessions" in summary


def test_btrfs_with_quotas_off_still_makes_subvolumes() -> None:
    # Subvolumes, so that the folders can get their limit once quotas are on.
    folders = decide(ROOT, Probe(BTRFS, is_root=True, btrfs_quota=None))
    assert isinstance(folders, BtrfsFolders)
    assert folders.enforcement.size == BY_API
    assert "btrfs quota enable" in folders.enforcement.reason
    unreadable = decide(ROOT, Probe(BTRFS, is_root=True, btrfs_quota=FileNotFoundError("no sys")))
    assert (
        unreadable.enforcement.size == BY_API and "cannot be read" in unreadable.enforcement.reason
    )


@pytest.mark.parametrize("magic", [XFS, EXT4, BTRFS])
def test_a_manager_that_is_not_root_enforces_nothing(magic: int) -> None:
    folders = decide(
        ROOT, Probe(magic, is_root=False, project_flags=ENFORCED, btrfs_quota="qgroup")
    )
    assert type(folders) is PlainFolders
    assert folders.enforcement.size == folders.enforcement.files == BY_API
    assert "not root" in folders.enforcement.reason


@pytest.mark.parametrize(("magic", "name"), [(TMPFS, "tmpfs"), (0x6969, "NFS"), (0x1234, "0x1234")])
def test_other_filesystems_enforce_nothing(magic: int, name: str) -> None:
    folders = decide(ROOT, Probe(magic, is_root=True))
    assert type(folders) is PlainFolders
    assert name in folders.enforcement.reason
    assert folders.enforcement.summary().startswith(
        "size and file count are not enforced in sessions"
    )


def test_summary_when_everything_holds() -> None:
    held = QuotaEnforcement(BY_FILESYSTEM, BY_FILESYSTEM, "why")
    assert (
        held.summary() == "size and file count are enforced by the filesystem, in sessions too: why"
    )


@pytest.fixture
def tmpfs_dir() -> Iterator[Path]:
    with tmpfs_directory() as path:
        yield path


def test_detect_on_tmpfs_says_nothing_is_enforced(tmpfs_dir: Path) -> None:
    enforcement = detect(tmpfs_dir).enforcement
    assert (enforcement.size, enforcement.files) == (BY_API, BY_API)
    assert f"{tmpfs_dir} is on tmpfs" in enforcement.reason


def test_detect_reads_the_real_filesystem(tmp_path: Path) -> None:
    """Whatever this machine's temporary directory is on, detection names it and only
    claims enforcement the kernel confirms."""
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = folder_quotas.probe(fd)
    finally:
        os.close(fd)
    enforcement = detect(tmp_path).enforcement
    assert folder_quotas.filesystem_name(found.magic) in enforcement.reason
    if enforcement.files == BY_FILESYSTEM:
        assert isinstance(found.project_flags, int)
        assert found.project_flags & project_quota.FS_QUOTA_PDQ_ENFD


def test_kernel_structures_have_the_sizes_of_the_uapi_headers() -> None:
    # Sizes and numbers as linux/fs.h, linux/dqblk_xfs.h and linux/btrfs.h give them.
    assert ctypes.sizeof(project_quota.FsXattr) == 28
    assert ctypes.sizeof(project_quota.FsDiskQuota) == 112
    assert project_quota.FsDiskQuota.d_rtb_hardlimit.offset == 72
    assert ctypes.sizeof(project_quota.FsQuotaStatv) == 160
    assert project_quota.FsQuotaStatv.qs_pquota.offset == 56
    assert ctypes.sizeof(btrfs.VolArgs) == 4096
    assert ctypes.sizeof(btrfs.InoLookupArgs) == 4096
    assert ctypes.sizeof(btrfs.FsInfoArgs) == 1024
    assert ctypes.sizeof(btrfs.QgroupLimitArgs) == 48
    assert ctypes.sizeof(StatFs) == 120
    assert project_quota.FS_IOC_FSGETXATTR == 0x801C581F
    assert project_quota.FS_IOC_FSSETXATTR == 0x401C5820
    assert project_quota.qcmd(project_quota.Q_XGETQSTATV, project_quota.PRJQUOTA) == 0x580802
    assert btrfs.BTRFS_IOC_SUBVOL_CREATE == 0x5000940E
    assert btrfs.BTRFS_IOC_SNAP_DESTROY == 0x5000940F
    assert btrfs.BTRFS_IOC_INO_LOOKUP == 0xD0009412
    assert btrfs.BTRFS_IOC_FS_INFO == 0x8400941F
    assert btrfs.BTRFS_IOC_QGROUP_LIMIT == 0x8030942B


def test_sessions_cannot_reach_the_ioctls_that_escape_a_quota() -> None:
    denied = set(sandbox.QUOTA_ESCAPING_IOCTLS.values())
    assert set(btrfs.SUBVOLUME_CREATING_IOCTLS) <= denied
    assert set(project_quota.PROJECT_CHANGING_IOCTLS) <= denied
    rules = [r for r in sandbox.SECCOMP_PROFILE["syscalls"] if r["names"] == ["ioctl"]]
    assert {r["args"][0]["valueTwo"] for r in rules} == denied
    assert all(r["args"][0]["value"] == 0xFFFFFFFF for r in rules)  # 32-bit compare


def test_a_full_storage_is_quota_exceeded() -> None:
    problem = storage_problem(StorageFull("the folder's storage is full"))
    assert isinstance(problem, errors.QuotaExceeded)
    assert problem.status == 412


async def test_a_root_configured_as_a_symlink_works(tmp_path: Path) -> None:
    # The root is the operator's, so a link there is followed (links inside folders never).
    real = tmp_path / "disk"
    real.mkdir()
    (tmp_path / "vfolders").symlink_to(real)
    backend = load_storage_backends()["local"]
    host = backend.open_host(
        HostSettings("l", "local", str(tmp_path / "vfolders"), {}, str(tmp_path))
    )
    assert isinstance(host, LocalHost)
    fid = uuid.uuid4().hex
    await host.create_folder(fid)
    assert (real / fid / "data").is_dir()
    assert (await host.usage(fid)).file_count == 0
    assert (await host.folder_enforcement(fid)) == host.quota_enforcement
    await host.delete_folder(fid)
    assert not (real / fid).exists()
    with pytest.raises(EntryNotFound):
        await host.usage(fid)


class FakeProjectKernel:
    """The four project-quota calls, kept in memory: this machine's kernel may have no
    quota support (the real thing runs in tests/integration/vfolders on XFS and ext4)."""

    def __init__(self) -> None:
        self.projects: dict[int, tuple[int, bool]] = {}  # inode -> (project id, inherit)
        self.limits: dict[int, tuple[int, int]] = {}
        self.usage: dict[int, tuple[int, int]] = {}

    def get_project(self, fd: int) -> tuple[int, bool]:
        return self.projects.get(os.fstat(fd).st_ino, (0, False))

    def set_project(self, fd: int, project_id: int) -> None:
        self.projects[os.fstat(fd).st_ino] = (project_id, True)
        self.usage[project_id] = (0, 1)  # the directory itself is charged to it

    def get_quota(self, fd: int, project_id: int) -> project_quota.ProjectQuota:
        blocks, inodes = self.limits.get(project_id, (0, 0))
        used, count = self.usage.get(project_id, (0, 0))
        return project_quota.ProjectQuota(blocks, inodes, used, count)

    def set_limits(self, fd: int, project_id: int, *, block_bytes: int, inodes: int) -> None:
        self.limits[project_id] = (block_bytes, inodes)
        if not (block_bytes or inodes):
            self.usage.pop(project_id, None)


@pytest.fixture
def fake_kernel(monkeypatch: pytest.MonkeyPatch) -> FakeProjectKernel:
    kernel = FakeProjectKernel()
    for name in ("get_project", "set_project", "get_quota", "set_limits"):
        monkeypatch.setattr(project_quota, name, getattr(kernel, name))
    return kernel


def test_project_folders_get_an_unused_id_limits_and_usage(
    tmp_path: Path, fake_kernel: FakeProjectKernel
) -> None:
    folders = decide(tmp_path, Probe(XFS, is_root=True, project_flags=ENFORCED))
    assert isinstance(folders, ProjectQuotaFolders)
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        name = "0000000a" + "0" * 24
        preferred = folder_quotas.PROJECT_ID_BASE + 10
        fake_kernel.limits[preferred] = (1, 1)  # someone else's project: skipped
        folders.make(root, name)
        folder_fd = os.open(tmp_path / name, os.O_RDONLY)
        project_id, inherits = fake_kernel.get_project(folder_fd)
        os.close(folder_fd)
        assert (project_id, inherits) == (preferred + 1, True)

        held = folders.limit(root, name, FolderLimits(max_size_bytes=1000, max_files=20))
        assert held.in_sessions
        # The cap, plus the folder's own three directories, plus one upload in flight.
        assert fake_kernel.limits[project_id] == (1000, 20 + 3 + 1)
        assert folders.enforced(root, name).in_sessions

        fake_kernel.usage[project_id] = (4096, 3 + 5)
        assert folders.usage(root, name) == Usage(size_bytes=4096, file_count=5)

        # A folder without a project id of its own (made before) is the API's only.
        os.mkdir(tmp_path / "legacy")
        assert folders.limit(root, "legacy", FolderLimits(1, 1)).size == BY_API
        assert folders.enforced(root, "legacy").files == BY_API
        assert folders.usage(root, "legacy") is None  # walked instead

        folders.remove(root, name)
        assert not (tmp_path / name).exists()
        assert not fake_kernel.get_quota(root, project_id).in_use  # free again
        folders.remove(root, name)  # a missing folder is fine
    finally:
        os.close(root)
