"""btrfs subvolumes and quota groups, through the ioctls of ``linux/btrfs.h``.

Each folder of a ``local`` host on btrfs is a subvolume, and the subvolume's level-0
quota group gets a limit on its *referenced* bytes, which the kernel holds against
every writer (sessions included: a write past it fails with EDQUOT). btrfs counts no
inodes, so a file-count cap cannot be held here.

Why ioctls rather than the ``btrfs`` command: every call acts on a directory descriptor
the plugin already holds plus a single name (the module's rule: no path inside the
storage root is resolved from a string), errors come back as errno values instead of
messages to parse, nothing is spawned per folder, and the manager does not need
btrfs-progs installed (only the tests do, for ``mkfs.btrfs``). The structures are small
and fixed by the kernel's uapi.

Whether quotas are on, and a quota group's limit, are read from sysfs
(``/sys/fs/btrfs/<fsid>/qgroups``, Linux 5.9+) rather than the quota tree: it needs no
tree search and no privilege.
"""

from __future__ import annotations

import ctypes
import fcntl
import uuid
from pathlib import Path

from crucible.plugins.storage.linux_abi import IOC_READ, IOC_WRITE, c_fields, ioc

BTRFS_SUPER_MAGIC = 0x9123683E
#: The inode number of every subvolume's root directory.
BTRFS_FIRST_FREE_OBJECTID = 256
BTRFS_QGROUP_LIMIT_MAX_RFER = 1 << 0
SYSFS_ROOT = Path("/sys/fs/btrfs")
_MAGIC = 0x94


# The argument structures of linux/btrfs.h.


class VolArgs(ctypes.Structure):
    """``struct btrfs_ioctl_vol_args``."""

    _fields_ = c_fields("__s64 fd; char name[4088];")


class QgroupLimit(ctypes.Structure):
    """``struct btrfs_qgroup_limit``."""

    _fields_ = c_fields("__u64 flags, max_rfer, max_excl, rsv_rfer, rsv_excl;")


class QgroupLimitArgs(ctypes.Structure):
    """``struct btrfs_ioctl_qgroup_limit_args``."""

    _fields_ = c_fields("__u64 qgroupid; struct limit lim;", limit=QgroupLimit)


class InoLookupArgs(ctypes.Structure):
    """``struct btrfs_ioctl_ino_lookup_args``."""

    _fields_ = c_fields("__u64 treeid, objectid; char name[4080];")


class FsInfoArgs(ctypes.Structure):
    """``struct btrfs_ioctl_fs_info_args``."""

    _fields_ = c_fields(
        "__u64 max_id, num_devices; __u8 fsid[16]; __u32 nodesize, sectorsize, clone_alignment;"
        "__u16 csum_type, csum_size; __u64 flags, generation; __u8 metadata_uuid[16];"
        "__u8 reserved[944];"
    )


BTRFS_IOC_SNAP_CREATE = ioc(IOC_WRITE, _MAGIC, 1, ctypes.sizeof(VolArgs))
BTRFS_IOC_SUBVOL_CREATE = ioc(IOC_WRITE, _MAGIC, 14, ctypes.sizeof(VolArgs))
BTRFS_IOC_SNAP_DESTROY = ioc(IOC_WRITE, _MAGIC, 15, ctypes.sizeof(VolArgs))
BTRFS_IOC_INO_LOOKUP = ioc(IOC_READ | IOC_WRITE, _MAGIC, 18, ctypes.sizeof(InoLookupArgs))
#: The v2 argument struct has the same size (4096) as `VolArgs`.
BTRFS_IOC_SNAP_CREATE_V2 = ioc(IOC_WRITE, _MAGIC, 23, ctypes.sizeof(VolArgs))
BTRFS_IOC_SUBVOL_CREATE_V2 = ioc(IOC_WRITE, _MAGIC, 24, ctypes.sizeof(VolArgs))
BTRFS_IOC_FS_INFO = ioc(IOC_READ, _MAGIC, 31, ctypes.sizeof(FsInfoArgs))
# _IOR although it writes: as the header declares it.
BTRFS_IOC_QGROUP_LIMIT = ioc(IOC_READ, _MAGIC, 43, ctypes.sizeof(QgroupLimitArgs))
#: Every ioctl that makes a subvolume: a session must never reach one, since a nested
#: subvolume gets a quota group of its own, outside its folder's limit.
SUBVOLUME_CREATING_IOCTLS = (
    BTRFS_IOC_SNAP_CREATE,
    BTRFS_IOC_SUBVOL_CREATE,
    BTRFS_IOC_SNAP_CREATE_V2,
    BTRFS_IOC_SUBVOL_CREATE_V2,
)


def _vol_args(name: str) -> VolArgs:
    return VolArgs(fd=0, name=name.encode())


def create_subvolume(parent_fd: int, name: str) -> None:
    """A new, empty subvolume `name` in directory `parent_fd` (mode 0755, owned by us)."""
    fcntl.ioctl(parent_fd, BTRFS_IOC_SUBVOL_CREATE, _vol_args(name))


def destroy_subvolume(parent_fd: int, name: str) -> None:
    """Delete subvolume `name` with everything in it, at once (the space is freed in the
    background). ENOTEMPTY when it holds other subvolumes; EPERM without CAP_SYS_ADMIN."""
    fcntl.ioctl(parent_fd, BTRFS_IOC_SNAP_DESTROY, _vol_args(name))


def subvolume_id(fd: int) -> int:
    """The id of the subvolume holding `fd` (also its level-0 quota group's id)."""
    args = InoLookupArgs(treeid=0, objectid=BTRFS_FIRST_FREE_OBJECTID)
    fcntl.ioctl(fd, BTRFS_IOC_INO_LOOKUP, args)
    return int(args.treeid)


def limit_referenced(fd: int, subvol_id: int, max_bytes: int) -> None:
    """Cap the referenced bytes of subvolume `subvol_id` (0 removes the cap).

    ENOTCONN when quotas are off on the filesystem, EPERM without CAP_SYS_ADMIN.
    """
    args = QgroupLimitArgs(
        qgroupid=subvol_id,
        lim=QgroupLimit(flags=BTRFS_QGROUP_LIMIT_MAX_RFER, max_rfer=max_bytes),
    )
    fcntl.ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, args)


def _sysfs(fd: int) -> Path:
    info = FsInfoArgs()
    fcntl.ioctl(fd, BTRFS_IOC_FS_INFO, info)
    return SYSFS_ROOT / str(uuid.UUID(bytes=bytes(info.fsid)))


def quota_state(fd: int) -> str | None:
    """The quota mode of the filesystem of `fd` (``qgroup`` or ``squota``), or None when
    quotas are off. `FileNotFoundError` when sysfs does not describe the filesystem."""
    fs_dir = _sysfs(fd)
    if not fs_dir.is_dir():
        raise FileNotFoundError(f"{fs_dir} is missing (is /sys mounted?)")
    qgroups = fs_dir / "qgroups"
    try:
        return (qgroups / "mode").read_text().strip() or "qgroup"
    except FileNotFoundError:
        # Kernels before 6.7 have no `mode` file: quotas are on if the directory is there.
        return "qgroup" if qgroups.is_dir() else None


def referenced_limit(fd: int, subvol_id: int) -> int:
    """The referenced-bytes limit of the subvolume's quota group; 0 when none."""
    path = _sysfs(fd) / "qgroups" / f"0_{subvol_id}" / "max_referenced"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0
