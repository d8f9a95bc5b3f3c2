"""mount(2) and umount2(2) for the host side of kernels' storage (scratch, pooled mounts).

Called through libc rather than the mount(8) binary: exact errno values to decide what
is tolerable, and no dependency on util-linux's option parsing. Needs root
(CAP_SYS_ADMIN) on the host.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import errno
import functools
import os


class MountError(OSError):
    """A mount or unmount failed (its errno and what was asked)."""


class MountFlag(enum.IntFlag):
    """mount(2) flags (``<linux/mount.h>``)."""

    NONE = 0
    RDONLY = 0x1
    NOSUID = 0x2
    NODEV = 0x4
    REMOUNT = 0x20
    BIND = 0x1000
    MOVE = 0x2000
    PRIVATE = 1 << 18
    SHARED = 1 << 20


class UnmountFlag(enum.IntFlag):
    """umount2(2) flags."""

    NONE = 0
    #: Detach now, free when the last user leaves (a lazy unmount).
    DETACH = 0x2
    #: Never follow a symbolic link in the last component.
    NOFOLLOW = 0x8


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def mount(
    source: str | None,
    target: str,
    flags: MountFlag,
    *,
    fstype: str | None = None,
    data: str | None = None,
) -> None:
    """mount(2); `MountError` when it fails."""
    rc = _libc().mount(
        None if source is None else os.fsencode(source),
        os.fsencode(target),
        None if fstype is None else fstype.encode(),
        ctypes.c_ulong(flags),
        None if data is None else data.encode(),
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise MountError(err, f"mount {source} on {target}: {os.strerror(err)}")


def unmount(target: str, flags: UnmountFlag = UnmountFlag.NOFOLLOW) -> bool:
    """umount2(2): True when `target` was unmounted, False when it was no mount point
    (or is gone); `MountError` for any other failure (EBUSY among them)."""
    if _libc().umount2(os.fsencode(target), ctypes.c_int(flags)) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return False
    raise MountError(err, f"umount {target}: {os.strerror(err)}")
