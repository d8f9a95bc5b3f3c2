"""How the ``local`` plugin makes a folder's directory hold its caps, per filesystem.

The API checks a folder's caps before its own writes, but sessions write to a mounted
folder directly. Only the filesystem under the host's root can refuse *those* writes,
and what it can refuse depends on what it is:

=================================  ======================  ==========================
filesystem                         size                    file count
=================================  ======================  ==========================
XFS mounted with ``prjquota``      project quota (blocks)  project quota (inodes)
ext4, ``-O quota,project``,        project quota (blocks)  project quota (inodes)
mounted with ``prjquota``
btrfs with quotas on               quota-group limit       not possible (API only)
anything else, or no root          API only                API only
=================================  ======================  ==========================

`detect` probes the root once when the host is opened (`probe`, then the pure
`decide`), and the host then makes, limits, measures and removes each folder's
directory (``<root>/<folder id>``, which holds ``data`` and ``staging``) through the
`PlainFolders` (or subclass) it got. The cap covers ``staging`` too, so an upload in flight counts.

All calls are blocking; the host runs them in worker threads.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs

from crucible.fstree import DIR_FLAGS, remove_tree
from crucible.hookspecs.storage import (
    BY_API,
    BY_FILESYSTEM,
    FolderLimits,
    QuotaEnforcement,
    Usage,
)
from crucible.plugins.storage import btrfs, project_quota
from crucible.plugins.storage.linux_abi import filesystem_magic

T = TypeVar("T")
#: The configured root is the operator's (it may be a symlink they made), never a
#: session's: it is opened following links.
ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Inodes of a folder that are not its content: ``<id>``, ``<id>/data``, ``<id>/staging``.
OWN_INODES = 3
#: The inode limit is the cap plus the folder's own inodes plus this: an API upload
#: that replaces a file holds the old and the staged inode for a moment (uploads to one
#: folder are serialised, so one is enough).
UPLOAD_INODES = 1
#: Project ids are picked from this range (ids below are left to the operator's own
#: /etc/projid); 2**31 keeps them positive for every tool.
PROJECT_ID_BASE = 1 << 20
PROJECT_ID_SPAN = (1 << 31) - PROJECT_ID_BASE
#: How many ids after a folder's preferred one are tried before giving up.
PROJECT_ID_PROBES = 64

_FILESYSTEM_NAMES = {
    btrfs.BTRFS_SUPER_MAGIC: "btrfs",
    project_quota.XFS_SUPER_MAGIC: "XFS",
    project_quota.EXT4_SUPER_MAGIC: "ext4",
    0x01021994: "tmpfs",
    0x794C7630: "overlayfs",
    0x6969: "NFS",
    0xFF534D42: "CIFS",
    0x2FC12FC1: "ZFS",
    0x65735546: "FUSE",
}


def filesystem_name(magic: int) -> str:
    return _FILESYSTEM_NAMES.get(magic, f"a filesystem of type {magic:#x}")


def on_folder_dir(root_fd: int, name: str, fn: Callable[[int], T]) -> T:
    """`fn` with a descriptor of the folder directory `name` (never a symlink)."""
    fd = os.open(name, DIR_FLAGS, dir_fd=root_fd)
    try:
        return fn(fd)
    finally:
        os.close(fd)


class PlainFolders:
    """Folder directories as plain directories: nothing holds inside sessions.

    Also the interface of the other kinds, which override what their filesystem does.
    """

    def __init__(self, enforcement: QuotaEnforcement) -> None:
        self.enforcement = enforcement

    def make(self, root_fd: int, name: str) -> None:
        os.mkdir(name, 0o700, dir_fd=root_fd)

    def limit(self, root_fd: int, name: str, limits: FolderLimits) -> QuotaEnforcement:
        return self.enforcement

    def enforced(self, root_fd: int, name: str) -> QuotaEnforcement:
        return self.enforcement

    def usage(self, root_fd: int, name: str) -> Usage | None:
        """The folder's usage from the filesystem's accounting; None: walk the tree."""
        return None

    def remove(self, root_fd: int, name: str) -> None:
        remove_tree(root_fd, name)


class ProjectQuotaFolders(PlainFolders):
    """XFS/ext4: a project id per folder, hard limits on its blocks and inodes."""

    def __init__(self, enforcement: QuotaEnforcement) -> None:
        super().__init__(enforcement)
        # Two folders made at once in this process must not pick the same free id.
        self._allocating = threading.Lock()

    def _project_of(self, root_fd: int, name: str) -> int:
        """The folder's project id; 0 when it has none of its own (made before this host
        held quotas, or its directory lost PROJINHERIT)."""
        project_id, inherits = on_folder_dir(root_fd, name, project_quota.get_project)
        return project_id if inherits else 0

    def _free_project_id(self, root_fd: int, name: str) -> int:
        # Derived from the folder id, so ids spread without any bookkeeping file; an id
        # with limits or usage belongs to someone (another folder, the operator).
        preferred = int(name[:8], 16) % PROJECT_ID_SPAN
        for step in range(PROJECT_ID_PROBES):
            candidate = PROJECT_ID_BASE + (preferred + step) % PROJECT_ID_SPAN
            if not project_quota.get_quota(root_fd, candidate).in_use:
                return candidate
        raise OSError(errno.EEXIST, f"no free project id near {PROJECT_ID_BASE + preferred}")

    def make(self, root_fd: int, name: str) -> None:
        super().make(root_fd, name)
        try:
            with self._allocating:
                project_id = self._free_project_id(root_fd, name)
                on_folder_dir(root_fd, name, lambda fd: project_quota.set_project(fd, project_id))
        except BaseException:
            os.rmdir(name, dir_fd=root_fd)  # still empty
            raise

    def limit(self, root_fd: int, name: str, limits: FolderLimits) -> QuotaEnforcement:
        project_id = self._project_of(root_fd, name)
        if not project_id:
            return QuotaEnforcement.api_only(
                "the folder was made before this host held project quotas, so it has no project id"
            )
        project_quota.set_limits(
            root_fd,
            project_id,
            block_bytes=limits.max_size_bytes,
            inodes=limits.max_files + OWN_INODES + UPLOAD_INODES,
        )
        return self.enforcement

    def enforced(self, root_fd: int, name: str) -> QuotaEnforcement:
        project_id = self._project_of(root_fd, name)
        if not project_id:
            return QuotaEnforcement.api_only("the folder has no project id of its own")
        quota = project_quota.get_quota(root_fd, project_id)
        if not (quota.block_limit_bytes and quota.inode_limit):
            return QuotaEnforcement.api_only(f"project {project_id} has no hard limits set")
        return self.enforcement

    def usage(self, root_fd: int, name: str) -> Usage | None:
        # What the filesystem charges (blocks, directories included, in-flight writes
        # reserved), in O(1): the numbers its limits are held against.
        try:
            project_id = self._project_of(root_fd, name)
        except FileNotFoundError:
            return None  # the host reports the missing folder
        if not project_id:
            return None
        quota = project_quota.get_quota(root_fd, project_id)
        return Usage(size_bytes=quota.used_bytes, file_count=max(0, quota.inodes - OWN_INODES))

    def remove(self, root_fd: int, name: str) -> None:
        try:
            project_id = self._project_of(root_fd, name)
        except FileNotFoundError:
            return
        remove_tree(root_fd, name)
        if project_id:
            # Free the id for another folder (ids in use are those with limits or usage).
            project_quota.set_limits(root_fd, project_id, block_bytes=0, inodes=0)


class BtrfsFolders(PlainFolders):
    """btrfs: each folder a subvolume whose quota group caps its referenced bytes."""

    def make(self, root_fd: int, name: str) -> None:
        # A subvolume even while quotas are off: it can get its limit once they are on.
        btrfs.create_subvolume(root_fd, name)
        try:
            on_folder_dir(root_fd, name, lambda fd: os.fchmod(fd, 0o700))
        except BaseException:
            self.remove(root_fd, name)
            raise

    def _subvolume(self, root_fd: int, name: str) -> int:
        """The folder's subvolume id; 0 when the folder is a plain directory."""

        def subvolume(fd: int) -> int:
            if os.fstat(fd).st_ino != btrfs.BTRFS_FIRST_FREE_OBJECTID:
                return 0
            return btrfs.subvolume_id(fd)

        return on_folder_dir(root_fd, name, subvolume)

    def limit(self, root_fd: int, name: str, limits: FolderLimits) -> QuotaEnforcement:
        subvolume = self._subvolume(root_fd, name)
        if not subvolume:
            return QuotaEnforcement.api_only(
                "the folder was made before this host used subvolumes, so no quota group can cap it"
            )
        if self.enforcement.size != BY_FILESYSTEM:
            return self.enforcement
        btrfs.limit_referenced(root_fd, subvolume, limits.max_size_bytes)
        return self.enforcement

    def enforced(self, root_fd: int, name: str) -> QuotaEnforcement:
        subvolume = self._subvolume(root_fd, name)
        if not subvolume:
            return QuotaEnforcement.api_only("the folder is not a subvolume")
        if self.enforcement.size == BY_FILESYSTEM and not btrfs.referenced_limit(
            root_fd, subvolume
        ):
            return QuotaEnforcement.api_only(
                f"the quota group 0/{subvolume} of the folder has no limit"
            )
        return self.enforcement

    def remove(self, root_fd: int, name: str) -> None:
        try:
            st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode) and st.st_ino == btrfs.BTRFS_FIRST_FREE_OBJECTID:
            try:
                # The whole subvolume at once, whatever it holds; the kernel frees the
                # space in the background.
                btrfs.destroy_subvolume(root_fd, name)
                return
            except OSError as exc:
                # ENOTEMPTY: it holds nested subvolumes (made where the seccomp filter
                # did not stop it); those go one by one below.
                if exc.errno not in (errno.ENOTEMPTY, errno.EPERM):
                    raise
        remove_tree(root_fd, name)


# -- detection ---------------------------------------------------------------------------------


@attrs.frozen
class Probe:
    """What the kernel says about the filesystem under a host's root."""

    magic: int
    is_root: bool
    #: btrfs: the quota mode (``qgroup``/``squota``), None when off, or why unknown.
    btrfs_quota: str | OSError | None = None
    #: XFS/ext4: ``qs_flags`` of the project quota state, or the error that answered.
    project_flags: int | OSError | None = None


def probe(root_fd: int) -> Probe:
    magic = filesystem_magic(root_fd)
    is_root = os.geteuid() == 0
    found = Probe(magic, is_root)
    if magic == btrfs.BTRFS_SUPER_MAGIC:
        try:
            return attrs.evolve(found, btrfs_quota=btrfs.quota_state(root_fd))
        except OSError as exc:
            return attrs.evolve(found, btrfs_quota=exc)
    if magic in (project_quota.XFS_SUPER_MAGIC, project_quota.EXT4_SUPER_MAGIC):
        try:
            return attrs.evolve(found, project_flags=project_quota.project_quota_flags(root_fd))
        except OSError as exc:
            return attrs.evolve(found, project_flags=exc)
    return found


def _project_quota_off(fs: str, found: int | OSError | None) -> str:
    how = (
        "mount it with -o prjquota"
        if fs == "XFS"
        else "make it with mkfs.ext4 -O quota,project and mount it with -o prjquota"
    )
    if isinstance(found, OSError):
        if found.errno == errno.ENOSYS:
            return f"the kernel was built without {fs} quota support"
        return f"project quotas are off ({found.strerror}); {how}"
    if found is not None and found & project_quota.FS_QUOTA_PDQ_ACCT:
        return f"project quotas are accounted but not enforced; {how}"
    return f"project quotas are off; {how}"


def decide(root: Path, found: Probe) -> PlainFolders:
    """Which kind of folder directories a host with this root gets, and why."""
    fs = filesystem_name(found.magic)
    where = f"{root} is on {fs}"
    if found.magic == btrfs.BTRFS_SUPER_MAGIC:
        if not found.is_root:
            return PlainFolders(
                QuotaEnforcement.api_only(
                    f"{where}, but the manager is not root, which quota-group limits need"
                )
            )
        if isinstance(found.btrfs_quota, OSError):
            return BtrfsFolders(
                QuotaEnforcement.api_only(
                    f"{where}, but its quota state cannot be read: {found.btrfs_quota}"
                )
            )
        if found.btrfs_quota is None:
            return BtrfsFolders(
                QuotaEnforcement.api_only(
                    f"{where} with quotas off; `btrfs quota enable <mount point>` turns them "
                    "on (folders then get their size limit at the next start)"
                )
            )
        return BtrfsFolders(
            QuotaEnforcement(
                size=BY_FILESYSTEM,
                files=BY_API,
                reason=f"{where} (quota mode {found.btrfs_quota}): a quota-group limit "
                "holds each folder's size, and btrfs cannot limit a number of files",
            )
        )
    if found.magic in (project_quota.XFS_SUPER_MAGIC, project_quota.EXT4_SUPER_MAGIC):
        flags = found.project_flags
        if not found.is_root:
            reason = f"{where}, but the manager is not root, which project quotas need"
        elif isinstance(flags, int) and flags & project_quota.FS_QUOTA_PDQ_ENFD:
            return ProjectQuotaFolders(
                QuotaEnforcement(
                    size=BY_FILESYSTEM,
                    files=BY_FILESYSTEM,
                    reason=f"{where} with project quotas: each folder is a project with "
                    "hard limits on blocks and inodes",
                )
            )
        else:
            reason = f"{where}, but {_project_quota_off(fs, flags)}"
        return PlainFolders(QuotaEnforcement.api_only(reason))
    return PlainFolders(
        QuotaEnforcement.api_only(
            f"{where}, which has no per-folder quotas this plugin can set (btrfs with "
            "quotas, XFS with prjquota and ext4 with project quotas have)"
        )
    )


def detect(root: Path) -> PlainFolders:
    fd = os.open(root, ROOT_FLAGS)
    try:
        return decide(root, probe(fd))
    finally:
        os.close(fd)
