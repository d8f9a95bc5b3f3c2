"""Walking and removing directory trees that untrusted code writes.

Sessions write these trees (vfolders, ``/home/work``) and may rearrange them while the
manager or the agent, both root, walks them. Every walk here

* never follows a symbolic link: each directory is opened with ``O_NOFOLLOW``
  relative to its parent's descriptor, and entries are looked at with ``lstat``;
* has no recursion and holds at most `MAX_OPEN` directory descriptors however deep
  the tree goes. `os.fwalk` and `shutil.rmtree` recurse: a tree a few thousand levels
  deep, which any session can make in a second, raises ``RecursionError`` in them
  (a folder that can never be deleted, a usage sampler that stops for every tenant),
  and a deep one short of that holds one descriptor per level;
* goes back up to a directory whose descriptor it let go by opening ``..`` from the
  child and checking that it is the same directory (device and inode) it left. When
  a session moved a directory meanwhile, the walk raises `TreeChanged` instead of
  carrying on somewhere else, possibly outside the tree.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable

#: Directory descriptors one walk holds at most.
MAX_OPEN = 32
#: Whole-tree attempts `remove_tree` makes while a session keeps adding entries.
REMOVE_ATTEMPTS = 3

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

Entry = tuple[str, os.stat_result]


class TreeChanged(OSError):
    """A directory moved while the tree was walked; the walk stopped."""


class _Frame:
    __slots__ = ("fd", "ident", "name", "subdirs")

    def __init__(self, fd: int, name: str, subdirs: list[str]) -> None:
        st = os.fstat(fd)
        self.fd = fd
        self.ident = (st.st_dev, st.st_ino)
        self.name = name
        self.subdirs = subdirs


def _entries(fd: int) -> list[Entry]:
    found = []
    for name in os.listdir(fd):
        try:
            found.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
        except FileNotFoundError:
            continue  # removed while we looked
    return found


def traverse(
    root_fd: int,
    visit: Callable[[int, list[Entry]], None],
    *,
    leave: Callable[[int, str], None] | None = None,
    max_open: int = MAX_OPEN,
) -> None:
    """Call ``visit(dir_fd, entries)`` for the directory `root_fd` and every directory
    below it, top-down, with the ``lstat`` of each entry; then, bottom-up,
    ``leave(parent_fd, name)`` for every directory below the root.

    `visit` may change the directory (unlink entries); subdirectories are taken from
    the entries it was given. Directories that vanish or turn into something else
    before they are entered are skipped. Raises `TreeChanged` (see the module doc).
    """
    stack: list[_Frame] = []

    def enter(fd: int, name: str) -> None:
        try:
            entries = _entries(fd)
            stack.append(_Frame(fd, name, [n for n, st in entries if stat.S_ISDIR(st.st_mode)]))
        except BaseException:
            os.close(fd)
            raise
        # Let go of the oldest descriptors; they are found again through "..".
        for frame in stack[: max(0, len(stack) - max_open)]:
            if frame.fd >= 0:
                os.close(frame.fd)
                frame.fd = -1
        visit(fd, entries)

    try:
        enter(os.dup(root_fd), "")
        while stack:
            top = stack[-1]
            if top.subdirs:
                name = top.subdirs.pop()
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=top.fd)
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        continue  # gone, or no longer a directory: nothing to walk
                    raise
                enter(child, name)
                continue
            stack.pop()
            if stack:
                parent = stack[-1]
                if parent.fd < 0:
                    parent.fd = _reopen_parent(top, parent)
                if leave is not None:
                    leave(parent.fd, top.name)
            os.close(top.fd)
            top.fd = -1
    finally:
        for frame in stack:
            if frame.fd >= 0:
                os.close(frame.fd)


def _reopen_parent(child: _Frame, parent: _Frame) -> int:
    fd = os.open("..", _DIR_FLAGS, dir_fd=child.fd)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != parent.ident:
        os.close(fd)
        raise TreeChanged(errno.ESTALE, "a directory was moved while the tree was walked")
    return fd


def remove_tree(parent_fd: int, name: str, *, max_open: int = MAX_OPEN) -> None:
    """Delete `name` in directory `parent_fd` and, if it is a directory, everything in
    it; a link is removed, never followed. Missing is fine. A session that keeps
    filling the directory meanwhile gets `REMOVE_ATTEMPTS` passes, then the
    ``ENOTEMPTY`` error."""

    def unlink_files(fd: int, entries: list[Entry]) -> None:
        for entry, st in entries:
            if not stat.S_ISDIR(st.st_mode):
                try:
                    os.unlink(entry, dir_fd=fd)
                except FileNotFoundError:
                    pass

    def rmdir(fd: int, entry: str) -> None:
        try:
            os.rmdir(entry, dir_fd=fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise  # ENOTEMPTY: refilled meanwhile; the next attempt gets it

    for attempt in range(REMOVE_ATTEMPTS):
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            return
        try:
            root = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                continue  # replaced meanwhile: look again
            raise
        try:
            traverse(root, unlink_files, leave=rmdir, max_open=max_open)
        finally:
            os.close(root)
        try:
            os.rmdir(name, dir_fd=parent_fd)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY or attempt == REMOVE_ATTEMPTS - 1:
                raise


def tree_usage(root_fd: int) -> tuple[int, int]:
    """``(bytes in regular files, entries)`` below directory `root_fd`."""
    size = count = 0

    def add(fd: int, entries: list[Entry]) -> None:
        nonlocal size, count
        count += len(entries)
        size += sum(st.st_size for _, st in entries if stat.S_ISREG(st.st_mode))

    traverse(root_fd, add)
    return size, count
