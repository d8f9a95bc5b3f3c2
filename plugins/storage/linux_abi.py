"""The pieces of the Linux ABI the storage modules share: ioctl numbers, structures
written as the uapi headers declare them, and ``fstatfs``."""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Mapping
from typing import Any, Final

IOC_WRITE = 1
IOC_READ = 2


def ioc(direction: int, kind: int, number: int, size: int) -> int:
    """``_IOC`` of ``asm-generic/ioctl.h`` (x86_64 and aarch64 use the generic layout)."""
    return (direction << 30) | (size << 16) | (kind << 8) | number


#: The C types the headers' structures use, as ctypes (64-bit Linux: ``long`` is 64 bits).
C_TYPES: Final[Mapping[str, Any]] = {
    "__u8": ctypes.c_uint8,
    "__u16": ctypes.c_uint16,
    "__u32": ctypes.c_uint32,
    "__u64": ctypes.c_uint64,
    "__s8": ctypes.c_int8,
    "__s16": ctypes.c_int16,
    "__s32": ctypes.c_int32,
    "__s64": ctypes.c_int64,
    "char": ctypes.c_char,
    "unsigned char": ctypes.c_ubyte,
    "int": ctypes.c_int,
    "long": ctypes.c_long,
    "unsigned long": ctypes.c_ulong,
}
_MEMBER: Final = re.compile(r"([A-Za-z_]\w*)(?:\[(\d+)\])?")


def c_fields(declarations: str, **structs: type[ctypes.Structure]) -> list[tuple[str, Any]]:
    """A structure's ``_fields_`` from its members as the C header declares them.

    ``c_fields("__u64 treeid, objectid; char name[4080];")``: one declaration per
    ``;``, a type of `C_TYPES` (or ``struct NAME``, given as ``NAME=Class``), then one
    or more members, an array with its length. Written this way, a structure can be
    checked against its header line by line.
    """
    types = {**C_TYPES, **{f"struct {name}": cls for name, cls in structs.items()}}
    fields: list[tuple[str, Any]] = []
    for declaration in filter(None, (d.strip() for d in declarations.split(";"))):
        c_type = max((t for t in types if declaration.startswith(t + " ")), key=len, default=None)
        if c_type is None:
            raise ValueError(f"unknown C type in {declaration!r}")
        for member in declaration[len(c_type) :].split(","):
            match = _MEMBER.fullmatch(member.strip())
            if match is None:
                raise ValueError(f"cannot read member {member.strip()!r} of {declaration!r}")
            name, length = match.groups()
            fields.append((name, types[c_type] * int(length) if length else types[c_type]))
    return fields


class StatFs(ctypes.Structure):
    """``struct statfs`` of 64-bit Linux (every field a long, ``f_fsid`` two ints)."""

    _fields_ = c_fields(
        "long f_type, f_bsize; unsigned long f_blocks, f_bfree, f_bavail, f_files, f_ffree;"
        "int f_fsid[2]; long f_namelen, f_frsize, f_flags, f_spare[4];"
    )


libc = ctypes.CDLL(None, use_errno=True)


def filesystem_magic(fd: int) -> int:
    """``f_type`` of the filesystem holding `fd` (``os.statvfs`` does not report it)."""
    buf = StatFs()
    if libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fstatfs: {os.strerror(err)}")
    return int(buf.f_type) & 0xFFFFFFFF
