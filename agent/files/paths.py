"""Paths in a kernel's work tree: checked as text, walked without following a link.

A client's path is read lexically (`split_path`); the walk (`walk`) then goes one
component at a time from a descriptor of the work root, with ``O_NOFOLLOW``
(`crucible.fstree`), so a link user code planted anywhere on the way is refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from crucible import fstree
from crucible.kernels.contract import WORK_DIR, WORK_GID, WORK_UID
from crucible.kernels.limits import MAX_NAME_BYTES, MAX_PATH_BYTES


class FileOpError(Exception):
    """A file operation refused or failed; `kind` decides the API status."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def invalid(message: str) -> FileOpError:
    return FileOpError("invalid-path", message)


def not_found(message: str) -> FileOpError:
    return FileOpError("file-not-found", message)


def split_path(path: object) -> list[str]:
    """The components of `path` below the work root, checked but not resolved.

    Relative paths are relative to /home/work; absolute ones must lie under it. ``.``
    and empty components vanish; ``..`` removes the previous component and may never
    climb above the root (no symlink is ever followed, so this lexical reading is also
    what the walk does). NUL, CR and LF are refused anywhere, as are over-long names.
    """
    if not isinstance(path, str):
        raise invalid("a path must be a string")
    if "\x00" in path:
        raise invalid("a path must not contain NUL characters")
    if "\n" in path or "\r" in path:
        raise invalid("a path must not contain line breaks")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise invalid(f"a path must be at most {MAX_PATH_BYTES} bytes long")
    rest = path
    if path.startswith("/"):
        if path != WORK_DIR and not path.startswith(WORK_DIR + "/"):
            raise invalid(f"{path!r} is outside {WORK_DIR}")
        rest = path[len(WORK_DIR) :]
    parts: list[str] = []
    for name in rest.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if not parts:
                raise invalid(f"{path!r} leads outside {WORK_DIR}")
            parts.pop()
            continue
        if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise invalid(f"a file name must be at most {MAX_NAME_BYTES} bytes long")
        parts.append(name)
    return parts


def container_path(parts: list[str]) -> str:
    return "/".join([WORK_DIR, *parts])


def _refused(exc: fstree.NotEntered, shown: str) -> FileOpError:
    """Why the directory `shown` could not be entered, from what the walk saw there."""
    if exc.step == "mkdir":
        return invalid(f"cannot create {shown}: {exc.strerror}")
    if exc.errno not in fstree.REFUSED_ERRNOS:
        return invalid(f"{shown}: {exc.strerror}")
    if exc.found_error is not None:
        return invalid(f"{shown}: {exc.found_error.strerror}")
    if exc.found is None:
        return not_found(f"{shown}: no such file or directory")
    if stat.S_ISLNK(exc.found.st_mode):
        return invalid(f"{shown} is a symbolic link; links are not followed")
    if not stat.S_ISDIR(exc.found.st_mode):
        return invalid(f"{shown} is not a directory")
    return invalid(f"{shown} cannot be opened")


def subdir_fd(parent_fd: int, name: str, shown: str) -> int:
    try:
        return fstree.open_dir(parent_fd, name)
    except fstree.NotEntered as exc:
        raise _refused(exc, shown) from None


def walk(root_fd: int, parts: list[str], *, create: bool = False, owned: bool = False) -> int:
    """A new descriptor of the directory `parts` below `root_fd`, without following links.

    With `create` (uploads), missing directories are made (owned by the kernel user);
    with `create` or `owned`, every directory on the way must belong to the kernel user.
    The caller closes the returned descriptor.
    """

    def check_owned(fd: int, depth: int) -> None:
        # Docker makes the mount points of vfolders (mounted over /home/work/NAME) in the
        # work tree as root: a file written there would hide under the mount. Uploads go
        # only where the kernel user could have written itself.
        if os.fstat(fd).st_uid != WORK_UID:
            shown = container_path(parts[: depth + 1])
            raise invalid(f"{shown} is not the session's own folder (a vfolder mount point?)")

    try:
        return fstree.walk_dirs(
            root_fd,
            parts,
            make=_give_to_kernel if create else None,
            entered=check_owned if create or owned else None,
        )
    except fstree.NotEntered as exc:
        refusal = _refused(exc, container_path(parts[: exc.depth + 1]))
        if create and refusal.kind == "file-not-found":
            # A directory an upload just made (or found) vanished before it could be
            # entered: the session is moving things under it. That is a bad path for
            # the upload (400), not a missing file (404).
            refusal = invalid(f"{refusal}; the folder changed while the upload went in")
        raise refusal from None


def _give_to_kernel(fd: int) -> None:
    os.fchown(fd, WORK_UID, WORK_GID)


@contextlib.contextmanager
def open_root(work_dir: Path) -> Iterator[int]:
    """A descriptor of the work root for the block (the agent made it: no link to fear)."""
    fd = os.open(work_dir, fstree.DIR_FLAGS)
    try:
        yield fd
    finally:
        os.close(fd)
