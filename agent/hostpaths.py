"""Host paths the agent hands to Docker by name: only ones no kernel can redirect.

A bind mount's source is a path string, and Docker resolves it (following symbolic
links) when the container starts, well after the agent looked at it. A check of the
path itself (``lstat``: "a directory, not a link") therefore proves nothing unless no
one else can change any component of it in between. `check_trusted_dir` proves that:
the path is walked component by component from ``/`` without following links, and
every directory on the way must be one that only root can change the entries of
(owned by root and not writable by group or others, or sticky with the next entry
owned by root, like ``/tmp``). The last component itself may belong to anyone (a
vfolder's ``data`` belongs to the kernel user): what matters is that its *name* in its
parent cannot be swapped for a link.
"""

from __future__ import annotations

import errno
import os
import stat

_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UntrustedPath(OSError):
    """A path that could change between the agent's check and Docker's use."""


def _only_root_renames(parent: os.stat_result, child: os.stat_result) -> bool:
    if parent.st_uid != 0:
        return False
    if not parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return True
    # Sticky: others may add entries but not rename or remove one they do not own.
    return bool(parent.st_mode & stat.S_ISVTX) and child.st_uid == 0


def check_trusted_dir(path: str) -> None:
    """Raise `UntrustedPath` (or `FileNotFoundError`) unless `path` is an absolute,
    normalised path to an existing directory that nobody but root can redirect.

    Blocking (a few ``stat`` calls): run it in a worker thread.
    """
    if not os.path.isabs(path) or os.path.normpath(path) != path or path.startswith("//"):
        raise UntrustedPath(errno.EINVAL, f"not an absolute, normalised path: {path!r}")
    fd = os.open("/", _PATH_FLAGS)
    try:
        parent = os.fstat(fd)
        names = [n for n in path.split("/") if n]
        for index, name in enumerate(names):
            shown = "/" + "/".join(names[: index + 1])
            child = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(child.st_mode):
                raise UntrustedPath(errno.ELOOP, f"{shown} is a symbolic link")
            if not stat.S_ISDIR(child.st_mode):
                raise UntrustedPath(errno.ENOTDIR, f"{shown} is not a directory")
            if not _only_root_renames(parent, child):
                raise UntrustedPath(
                    errno.EPERM, f"{os.path.dirname(shown)} can be changed by others than root"
                )
            next_fd = os.open(name, _PATH_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
            parent = os.fstat(fd)
    finally:
        os.close(fd)
