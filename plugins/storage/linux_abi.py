"""Two pieces of the Linux ABI the storage modules share: ioctl numbers and ``fstatfs``."""

from __future__ import annotations

import ctypes
import os

IOC_WRITE = 1
IOC_READ = 2


def ioc(direction: int, kind: int, number: int, size: int) -> int:
    """``_IOC`` of ``asm-generic/ioctl.h`` (x86_64 and aarch64 use the generic layout)."""
    return (direction << 30) | (size << 16) | (kind << 8) | number


class StatFs(ctypes.Structure):
    """``struct statfs`` of 64-bit Linux (every field a long, ``f_fsid`` two ints)."""

    _fields_ = [
        ("f_type", ctypes.c_long),
        ("f_bsize", ctypes.c_long),
        ("f_blocks", ctypes.c_ulong),
        ("f_bfree", ctypes.c_ulong),
        ("f_bavail", ctypes.c_ulong),
        ("f_files", ctypes.c_ulong),
        ("f_ffree", ctypes.c_ulong),
        ("f_fsid", ctypes.c_int * 2),
        ("f_namelen", ctypes.c_long),
        ("f_frsize", ctypes.c_long),
        ("f_flags", ctypes.c_long),
        ("f_spare", ctypes.c_long * 4),
    ]


libc = ctypes.CDLL(None, use_errno=True)


def filesystem_magic(fd: int) -> int:
    """``f_type`` of the filesystem holding `fd` (``os.statvfs`` does not report it)."""
    buf = StatFs()
    if libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fstatfs: {os.strerror(err)}")
    return int(buf.f_type) & 0xFFFFFFFF
