"""Linux project quotas (XFS ``prjquota``; ext4 with the ``project`` feature and
``prjquota``), driven through ctypes.

A project quota limits every file whose inode carries the project's id, whoever writes
it: a directory gets the id and the PROJINHERIT flag, and everything created below it
inherits both, so a session writing into a mounted folder is charged to the folder.

Two kernel interfaces, with the structures and numbers of the uapi headers:

* ``FS_IOC_FSGETXATTR`` / ``FS_IOC_FSSETXATTR`` (``linux/fs.h``, ``struct fsxattr``):
  read and set a directory's project id and flags;
* ``quotactl_fd(2)`` (Linux 5.14) with the XFS quota commands of ``linux/dqblk_xfs.h``
  (``Q_XGETQSTATV``, ``Q_XGETQUOTA``, ``Q_XSETQLIM``). The VFS serves those for ext4 as
  well, so one code path covers both. ``quotactl_fd`` takes a descriptor of any file of
  the filesystem, so the block device under the mount never has to be found.

A file's owner may change its project id in the initial user namespace (the kernel only
refuses that inside a user namespace), so sessions must not reach ``FS_IOC_FSSETXATTR``
or ``FS_IOC_SETFLAGS``: the agent's seccomp filter refuses them
(`crucible.agent.sandbox`).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os

import attrs

from crucible.plugins.storage.linux_abi import IOC_READ, IOC_WRITE, c_fields, ioc, libc

# -- linux/fs.h -------------------------------------------------------------------------------


class FsXattr(ctypes.Structure):
    """``struct fsxattr``."""

    _fields_ = c_fields(
        "__u32 fsx_xflags, fsx_extsize, fsx_nextents, fsx_projid, fsx_cowextsize;"
        "unsigned char fsx_pad[8];"
    )


FS_IOC_FSGETXATTR = ioc(IOC_READ, ord("X"), 31, ctypes.sizeof(FsXattr))
FS_IOC_FSSETXATTR = ioc(IOC_WRITE, ord("X"), 32, ctypes.sizeof(FsXattr))
FS_IOC_SETFLAGS = ioc(IOC_WRITE, ord("f"), 2, ctypes.sizeof(ctypes.c_long))
FS_IOC32_SETFLAGS = ioc(IOC_WRITE, ord("f"), 2, ctypes.sizeof(ctypes.c_int))
FS_XFLAG_PROJINHERIT = 0x00000200
XFS_SUPER_MAGIC = 0x58465342
EXT4_SUPER_MAGIC = 0xEF53
#: Every ioctl that changes a project id or clears PROJINHERIT (``FS_IOC_SETFLAGS`` can
#: clear ext4's ``FS_PROJINHERIT_FL``): a session must never reach one.
PROJECT_CHANGING_IOCTLS = (FS_IOC_FSSETXATTR, FS_IOC_SETFLAGS, FS_IOC32_SETFLAGS)

# -- linux/dqblk_xfs.h and linux/quota.h -------------------------------------------------------


def _xqm_cmd(number: int) -> int:
    return (ord("X") << 8) + number


Q_XGETQUOTA = _xqm_cmd(3)
Q_XSETQLIM = _xqm_cmd(4)
Q_XGETQSTATV = _xqm_cmd(8)
PRJQUOTA = 2
FS_DQUOT_VERSION = 1
FS_PROJ_QUOTA = 1 << 1
FS_DQ_ISOFT = 1 << 0
FS_DQ_IHARD = 1 << 1
FS_DQ_BSOFT = 1 << 2
FS_DQ_BHARD = 1 << 3
FS_QUOTA_PDQ_ACCT = 1 << 4
FS_QUOTA_PDQ_ENFD = 1 << 5
FS_QSTATV_VERSION1 = 1
#: The XFS quota interface counts space in 512-byte "basic blocks".
BASIC_BLOCK = 512
#: ``quotactl_fd`` has the same number on every architecture (it is newer than the
#: unified syscall table); glibc has no wrapper for it.
SYS_QUOTACTL_FD = 443


def qcmd(command: int, quota_type: int) -> int:
    return (command << 8) | (quota_type & 0xFF)


class FsDiskQuota(ctypes.Structure):
    """``struct fs_disk_quota``."""

    _fields_ = c_fields(
        "__s8 d_version, d_flags; __u16 d_fieldmask; __u32 d_id;"
        "__u64 d_blk_hardlimit, d_blk_softlimit, d_ino_hardlimit, d_ino_softlimit;"
        "__u64 d_bcount, d_icount; __s32 d_itimer, d_btimer; __u16 d_iwarns, d_bwarns;"
        "__s8 d_itimer_hi, d_btimer_hi, d_rtbtimer_hi, d_padding2;"
        "__u64 d_rtb_hardlimit, d_rtb_softlimit, d_rtbcount; __s32 d_rtbtimer;"
        "__u16 d_rtbwarns; __s16 d_padding3; char d_padding4[8];"
    )


class FsQfileStatv(ctypes.Structure):
    """``struct fs_qfilestatv``."""

    _fields_ = c_fields("__u64 qfs_ino, qfs_nblks; __u32 qfs_nextents, qfs_pad;")


class FsQuotaStatv(ctypes.Structure):
    """``struct fs_quota_statv``."""

    _fields_ = c_fields(
        "__s8 qs_version; __u8 qs_pad1; __u16 qs_flags; __u32 qs_incoredqs;"
        "struct fs_qfilestatv qs_uquota, qs_gquota, qs_pquota;"
        "__s32 qs_btimelimit, qs_itimelimit, qs_rtbtimelimit;"
        "__u16 qs_bwarnlimit, qs_iwarnlimit, qs_rtbwarnlimit, qs_pad3; __u32 qs_pad4;"
        "__u64 qs_pad2[7];",
        fs_qfilestatv=FsQfileStatv,
    )


def _quotactl_fd(fd: int, command: int, qid: int, addr: ctypes.Structure) -> None:
    rc = libc.syscall(
        ctypes.c_long(SYS_QUOTACTL_FD),
        ctypes.c_int(fd),
        ctypes.c_uint(qcmd(command, PRJQUOTA)),
        ctypes.c_int(qid),
        ctypes.byref(addr),
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"quotactl_fd: {os.strerror(err)}")


# -- what the plugin uses ----------------------------------------------------------------------


def project_quota_flags(fd: int) -> int:
    """``qs_flags`` of the filesystem holding `fd` (``FS_QUOTA_PDQ_*`` bits).

    `OSError` as the kernel reports it: ENOSYS without quota support (``CONFIG_QUOTA``,
    or ``CONFIG_XFS_QUOTA``), ENOENT/ESRCH/ENOTSUP when project quotas are off.
    """
    statv = FsQuotaStatv(qs_version=FS_QSTATV_VERSION1)
    _quotactl_fd(fd, Q_XGETQSTATV, 0, statv)
    return int(statv.qs_flags)


def get_project(fd: int) -> tuple[int, bool]:
    """The project id of the inode `fd`, and whether it has PROJINHERIT."""
    attr = FsXattr()
    fcntl.ioctl(fd, FS_IOC_FSGETXATTR, attr)
    return int(attr.fsx_projid), bool(attr.fsx_xflags & FS_XFLAG_PROJINHERIT)


def set_project(fd: int, project_id: int) -> None:
    """Give directory `fd` the project id, with PROJINHERIT so new entries inherit it."""
    attr = FsXattr()
    fcntl.ioctl(fd, FS_IOC_FSGETXATTR, attr)
    attr.fsx_projid = project_id
    attr.fsx_xflags |= FS_XFLAG_PROJINHERIT
    fcntl.ioctl(fd, FS_IOC_FSSETXATTR, attr)


@attrs.frozen
class ProjectQuota:
    """One project's hard limits and what it holds (bytes and inodes)."""

    block_limit_bytes: int
    inode_limit: int
    used_bytes: int
    inodes: int

    @property
    def in_use(self) -> bool:
        return bool(self.block_limit_bytes or self.inode_limit or self.used_bytes or self.inodes)


def get_quota(fd: int, project_id: int) -> ProjectQuota:
    """The project's quota on the filesystem of `fd`; a project never used reads as zeros."""
    quota = FsDiskQuota()
    try:
        _quotactl_fd(fd, Q_XGETQUOTA, project_id, quota)
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # XFS: no dquot for this id yet
            return ProjectQuota(0, 0, 0, 0)
        raise
    return ProjectQuota(
        block_limit_bytes=int(quota.d_blk_hardlimit) * BASIC_BLOCK,
        inode_limit=int(quota.d_ino_hardlimit),
        used_bytes=int(quota.d_bcount) * BASIC_BLOCK,
        inodes=int(quota.d_icount),
    )


def set_limits(fd: int, project_id: int, *, block_bytes: int, inodes: int) -> None:
    """Hard limits of the project (0: none); soft limits are cleared, so nothing warns."""
    quota = FsDiskQuota(
        d_version=FS_DQUOT_VERSION,
        d_flags=FS_PROJ_QUOTA,
        d_fieldmask=FS_DQ_BHARD | FS_DQ_BSOFT | FS_DQ_IHARD | FS_DQ_ISOFT,
        d_id=project_id,
        # Rounded up: a limit below the cap would refuse the cap's last bytes.
        d_blk_hardlimit=-(-block_bytes // BASIC_BLOCK),
        d_ino_hardlimit=inodes,
    )
    _quotactl_fd(fd, Q_XSETQLIM, project_id, quota)
